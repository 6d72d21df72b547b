"""Issue 6 acceptance: containers move off a killed node once, and exist once when it returns."""

from __future__ import annotations

import collections
import json
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.integration.conftest import DockerCli, remove_all_containers, run_docker
from tests.integration.manager import Manager, free_port, wait_until
from tests.integration.stores import Etcd
from tests.integration.test_kv_discovery import Joiner

pytestmark = pytest.mark.asyncio(loop_scope="session")

SWARM_ID = "com.docker.swarm.id"
POLICY_LABEL = 'com.docker.swarm.reschedule-policies=["on-node-failure"]'


def manager_for(sandbox: Sandbox, failure_retry: int) -> Manager:
    port = free_port()
    return Manager(
        [
            "manage",
            "-H", f"tcp://127.0.0.1:{port}",
            "--engine-refresh-min-interval", "1s",
            "--engine-refresh-max-interval", "2s",
            "--engine-failure-retry", str(failure_retry),
            sandbox.discovery,
        ],
        port,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def fresh(sandbox3: Sandbox) -> AsyncIterator[Sandbox]:
    """The module's sandbox with no containers, every node up, before and after a test."""
    await remove_all_containers(sandbox3)
    try:
        yield sandbox3
    finally:
        for node in sandbox3.nodes:
            if not node.running:
                await node.start()
        await remove_all_containers(sandbox3)


async def ok(docker_cli: DockerCli, host: str, *args: str) -> str:
    result = await docker_cli(host, *args)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout


async def ps_names(docker_cli: DockerCli, host: str, *extra: str) -> list[str]:
    """`docker ps` NAMES column (`node/name`), one entry per listed container."""
    out = await ok(docker_cli, host, "ps", *extra, "--format", "{{.Names}}")
    return out.split()


async def ps_status(docker_cli: DockerCli, host: str) -> dict[str, str]:
    out = await ok(docker_cli, host, "ps", "-a", "--format", "{{.Names}}\t{{.Status}}")
    return dict(line.split("\t", 1) for line in out.splitlines() if line)


async def node_of(docker_cli: DockerCli, host: str, name: str) -> str:
    return (await ok(docker_cli, host, "inspect", "--format", "{{.Node.Name}}", name)).strip()


async def engine_copies(sandbox: Sandbox) -> list[tuple[str, str, str, str]]:
    """(node, name, swarm ID, state) of every container, read straight from the engines."""
    rows = []
    for node in sandbox.nodes:
        if not node.running:
            continue
        out = (await run_docker(
            node.docker_host, "ps", "-a", "--format",
            '{{.Names}}\t{{.Label "' + SWARM_ID + '"}}\t{{.State}}',
        )).stdout
        for line in out.splitlines():
            name, sid, state = line.split("\t")
            rows.append((node.name, name, sid, state))
    return rows


def manager_log(manager: Manager) -> str:
    try:
        with open(manager.log_path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:  # a stopped manager's log is gone
        return ""


async def swarm_events(manager: Manager, since: float) -> list[dict[str, object]]:
    async with manager.session() as session, session.get(
        manager.url + "/events", params={"since": f"{since:.3f}", "until": f"{time.time():.3f}"}
    ) as resp:
        text = await resp.text()
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [e for e in events if e.get("Type") == "swarm"]


async def test_reschedule_once_and_clean_up_on_return(
    fresh: Sandbox, docker_cli: DockerCli
) -> None:
    sandbox = fresh
    manager = manager_for(sandbox, failure_retry=2)
    await manager.start()
    try:
        await manager.wait_nodes(3)
        host = manager.tcp
        soft = ["-e", "constraint:node==~node-1"]
        await ok(docker_cli, host, "run", "-d", "--name", "env-policy", *soft,
                 "-e", "reschedule:on-node-failure", "busybox", "sleep", "600")
        await ok(docker_cli, host, "run", "-d", "--name", "label-policy", *soft,
                 "--label", POLICY_LABEL, "--restart", "always", "busybox", "sleep", "600")
        await ok(docker_cli, host, "run", "-d", "--name", "no-policy", *soft,
                 "busybox", "sleep", "600")
        # storage==disk: only node-1 has it, a hard constraint; the move must not happen.
        await ok(docker_cli, host, "run", "-d", "--name", "pinned",
                 "-e", "constraint:storage==disk", "-e", "reschedule:on-node-failure",
                 "busybox", "sleep", "600")
        moving = ["env-policy", "label-policy"]
        before: dict[str, dict[str, object]] = {}
        for name in [*moving, "no-policy", "pinned"]:
            assert await node_of(docker_cli, host, name) == "node-1"
            data = json.loads(await ok(docker_cli, host, "inspect", name))[0]
            before[name] = data
        started = time.time()

        await sandbox.nodes[1].kill()

        async def moved() -> bool:
            names = await ps_names(docker_cli, host)
            return all(
                any(n.endswith("/" + name) and not n.startswith("node-1/") for n in names)
                for name in moving
            )

        await wait_until(moved, 60, "rescheduled containers running on other nodes")
        names = await ps_names(docker_cli, host)
        counts = collections.Counter(n.split("/", 1)[1] for n in names)
        assert all(c == 1 for c in counts.values()), names
        assert "no-policy" not in counts and "pinned" not in counts
        for name in moving:
            data = json.loads(await ok(docker_cli, host, "inspect", name))[0]
            assert data["Node"]["Name"] in ("node-0", "node-2")
            assert data["State"]["Running"]
            assert data["Id"] != before[name]["Id"]
            labels = data["Config"]["Labels"]
            old_labels = before[name]["Config"]["Labels"]  # type: ignore[index]
            assert labels[SWARM_ID] == old_labels[SWARM_ID]
            assert "on-node-failure" in labels["com.docker.swarm.reschedule-policies"]
        status = await ps_status(docker_cli, host)
        assert status["node-1/no-policy"] == "Host Down"
        assert status["node-1/pinned"] == "Host Down"
        all_names = collections.Counter(n.split("/", 1)[1] for n in status)
        assert all(c == 1 for c in all_names.values()), status

        pinned_id = str(before["pinned"]["Id"])

        async def pinned_logged() -> bool:
            return f"Failed to reschedule container {pinned_id}" in manager_log(manager)

        await wait_until(pinned_logged, 30, "the watchdog saying why pinned stays")
        text = manager_log(manager)
        assert "storage==disk" in text.split(f"Failed to reschedule container {pinned_id}")[1][:400]
        for name in moving:
            assert f"Rescheduled container {before[name]['Id']} from node-1 to " in text
        assert f"Rescheduled container {before['no-policy']['Id']}" not in text
        events = await swarm_events(manager, started)
        moves = [e for e in events if e.get("Action") == "container_reschedule"]
        assert sorted(e["Actor"]["Attributes"]["name"] for e in moves) == sorted(moving)  # type: ignore[index]

        # node-1 returns with its old containers in its data root; label-policy restarts
        # by itself (--restart always), so a stale copy would run beside the new one.
        await sandbox.nodes[1].start()
        await manager.wait_nodes(3, timeout=90)
        # Healthy only after the stale copies are gone: no waiting here.
        rows = await engine_copies(sandbox)
        on_node1 = {name for node, name, _, _ in rows if node == "node-1"}
        assert not on_node1 & set(moving), rows
        assert {"no-policy", "pinned"} <= on_node1, rows
        running = collections.Counter(sid for _, _, sid, state in rows if state == "running")
        assert all(c == 1 for c in running.values()), rows
        status = await ps_status(docker_cli, host)
        all_names = collections.Counter(n.split("/", 1)[1] for n in status)
        assert all(c == 1 for c in all_names.values()), status
        assert set(moving) | {"no-policy", "pinned"} <= set(all_names)
        for name in moving:
            assert await node_of(docker_cli, host, name) in ("node-0", "node-2")
            logs = await docker_cli(host, "logs", name)
            assert logs.returncode == 0, logs.stderr
        # pinned was never moved: it is node-1's own container, back with its node.
        assert (json.loads(await ok(docker_cli, host, "inspect", "pinned"))[0]["Id"]
                == before["pinned"]["Id"])
    finally:
        print(manager_log(manager)[-8000:])  # shown by pytest when the test fails
        await manager.stop()


async def test_flapping_node_is_not_rescheduled(fresh: Sandbox, docker_cli: DockerCli) -> None:
    sandbox = fresh
    # A retry count the short outage below cannot reach: the node never turns Unhealthy.
    manager = manager_for(sandbox, failure_retry=20)
    await manager.start()
    try:
        await manager.wait_nodes(3)
        host = manager.tcp
        await ok(docker_cli, host, "run", "-d", "--name", "flappy",
                 "-e", "constraint:node==~node-2", "-e", "reschedule:on-node-failure",
                 "busybox", "sleep", "600")
        first = json.loads(await ok(docker_cli, host, "inspect", "flappy"))[0]
        assert first["Node"]["Name"] == "node-2"
        await sandbox.nodes[2].kill()

        async def failing_but_healthy() -> bool:
            node = (await manager.node_status())["node-2"]
            assert node["Status"] == "Healthy", node
            return bool(node.get("Error"))

        await wait_until(failing_but_healthy, 30, "node-2's failures counted")
        await sandbox.nodes[2].start()

        async def answering() -> bool:
            node = (await manager.node_status())["node-2"]
            assert node["Status"] == "Healthy", node
            return not node.get("Error")

        await wait_until(answering, 60, "node-2 answering again")

        async def seen_again() -> bool:
            data = json.loads(await ok(docker_cli, host, "inspect", "flappy"))[0]
            return not data["State"]["Running"]  # node-2 rebooted: the container exited

        await wait_until(seen_again, 60, "node-2's container state refreshed after its reboot")
        text = manager_log(manager)
        assert "Flagging engine as unhealthy" not in text
        assert "Rescheduled container" not in text
        rows = await engine_copies(sandbox)
        assert [(node, name) for node, name, _, _ in rows] == [("node-2", "flappy")], rows
    finally:
        print(manager_log(manager)[-8000:])  # shown by pytest when the test fails
        await manager.stop()


async def running_copies(sandbox: Sandbox, name: str) -> list[str]:
    """Nodes that run a container called NAME, read straight from the engines."""
    return [node for node, n, _, state in await engine_copies(sandbox)
            if n == name and state == "running"]


async def role(manager: Manager) -> str:
    return str(dict((await manager.info())["SystemStatus"]).get("Role", ""))


async def test_only_the_primary_reschedules_and_a_new_primary_takes_over(
    fresh: Sandbox, docker_cli: DockerCli
) -> None:
    sandbox = fresh
    store = Etcd()
    await store.start()
    joiners = [Joiner(node.addr, store.url("wd")) for node in sandbox.nodes]
    managers: list[Manager] = []
    try:
        for joiner in joiners:
            await joiner.start()
        for _ in range(2):
            port = free_port()
            managers.append(Manager([
                "manage", "-H", f"tcp://127.0.0.1:{port}",
                "--replication", "--advertise", f"127.0.0.1:{port}",
                "--replication-ttl", "4s", "--heartbeat", "1s",
                "--engine-refresh-min-interval", "1s", "--engine-refresh-max-interval", "2s",
                "--engine-failure-retry", "2",
                store.url("wd"),
            ], port))
            await managers[-1].start()
        for m in managers:
            await m.wait_nodes(3, timeout=60)

        async def one_primary() -> bool:
            return sorted([await role(m) for m in managers]) == ["primary", "replica"]

        await wait_until(one_primary, 30, "a primary and a replica")
        primary, replica = (managers if await role(managers[0]) == "primary"
                            else managers[::-1])
        for name in ("ha-a", "ha-b"):
            await ok(docker_cli, primary.tcp, "run", "-d", "--name", name,
                     "-e", "constraint:node==~node-1", "-e", "reschedule:on-node-failure",
                     "busybox", "sleep", "600")
            assert await node_of(docker_cli, primary.tcp, name) == "node-1"

        await sandbox.nodes[1].kill()

        async def moved() -> bool:
            return all([await running_copies(sandbox, n) for n in ("ha-a", "ha-b")])

        await wait_until(moved, 60, "the primary moving both containers")
        await replica.wait_nodes(1, status="Unhealthy", timeout=30)
        for name in ("ha-a", "ha-b"):
            assert len(await running_copies(sandbox, name)) == 1
            copies = [n for _, n, _, _ in await engine_copies(sandbox) if n == name]
            assert len(copies) == 1, copies  # the replica created no second copy
        assert "Rescheduled container" not in manager_log(replica)

        # Failover: the primary goes away, the replica's watchdog takes over.
        where = (await running_copies(sandbox, "ha-a"))[0]
        await primary.stop()

        async def took_over() -> bool:
            return await role(replica) == "primary"

        await wait_until(took_over, 30, "the replica becoming primary")
        await sandbox.nodes[int(where.split("-")[1])].kill()

        async def moved_again() -> bool:
            nodes = await running_copies(sandbox, "ha-a")
            return bool(nodes) and nodes != [where]

        await wait_until(moved_again, 60, "the new primary moving ha-a off its failed node")
        assert f" from {where} to " in manager_log(replica)
        assert len(await running_copies(sandbox, "ha-a")) == 1
    finally:
        for m in managers:
            print(manager_log(m)[-6000:])
            await m.stop()
        for joiner in joiners:
            await joiner.kill()
        await store.close()
