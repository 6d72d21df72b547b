"""Managed plugins and swarm-mode passthrough through shoal, with docker-py and the docker
CLI as clients, each checked against the sandbox engines themselves.

Plugins are per engine: installed on every node, listed once, changed where they are.
Swarm mode: a client may make one engine a swarm manager through shoal; every swarm-mode
call and every swarm-scoped network create then goes to that engine until it leaves.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import pytest_asyncio

from shoal.sandbox import Sandbox
from tests.integration.conftest import docker_ok as cli
from tests.integration.dockerpy import blocking, engine_clients
from tests.integration.manager import Manager, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

PLUGIN_CONFIG = {
    "description": "shoal test plugin",
    "documentation": "https://example.invalid/shoal",
    "entrypoint": ["/bin/busybox", "sleep", "600"],
    "network": {"type": "host"},
    "interface": {"types": ["docker.volumedriver/1.0"], "socket": "shoal.sock"},
    "env": [{"name": "DEBUG", "settable": ["value"], "value": "0"}],
}


@pytest.fixture(scope="module")
def manager(manager3: Manager) -> Manager:
    return manager3


@pytest.fixture(scope="module")
def engines(sandbox3: Sandbox) -> Iterator[list[docker.APIClient]]:
    """docker-py clients of the nodes' engines themselves."""
    with engine_clients(sandbox3) as clients:
        yield clients


def status_of(call: Callable[[], Any]) -> tuple[int, str]:
    """The status and message of a docker-py call that must fail."""
    try:
        call()
    except docker.errors.APIError as exc:
        assert exc.response is not None
        return exc.response.status_code, str(exc.explanation)
    raise AssertionError("the call succeeded")


# --- plugins ----------------------------------------------------------------------------------


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A plugin's directory as `docker plugin create` takes it: config.json and a rootfs
    holding a static busybox (the plugin is never enabled: it serves no socket)."""
    (tmp_path / "config.json").write_text(json.dumps(PLUGIN_CONFIG))
    bin_dir = tmp_path / "rootfs" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2("/bin/busybox", bin_dir / "busybox")
    return tmp_path


def holders(engines: list[docker.APIClient], name: str) -> list[dict[str, Any]]:
    """Each engine's own copy of plugin NAME (every engine must hold it)."""
    return [engine.inspect_plugin(name) for engine in engines]


def holds(engine: docker.APIClient, name: str) -> bool:
    try:
        engine.inspect_plugin(name)
    except docker.errors.NotFound:
        return False
    return True


@pytest_asyncio.fixture(loop_scope="session")
async def plugin_names(engines: list[docker.APIClient]) -> AsyncIterator[list[str]]:
    """Names a test installs; removed from every engine directly when it ends."""
    names: list[str] = []
    yield names

    def remove_everywhere() -> None:
        for engine in engines:
            for name in names:
                if holds(engine, name):
                    engine.remove_plugin(name, force=True)

    await blocking(remove_everywhere)


async def test_plugin_create_list_inspect_set_remove(
    api: docker.APIClient, engines: list[docker.APIClient], manager3: Manager,
    plugin_dir: Path, plugin_names: list[str],
) -> None:
    name = "shoal-test/dummy:latest"
    plugin_names.append(name)
    assert await blocking(lambda: api.create_plugin(name, str(plugin_dir))) is True
    copies = await blocking(lambda: holders(engines, name))  # on every node
    assert [c["Config"]["Entrypoint"] for c in copies] == [PLUGIN_CONFIG["entrypoint"]] * 3

    listed = [p for p in await blocking(api.plugins) if p["Name"] == name]
    assert len(listed) == 1, listed  # once, not once per node
    assert listed[0]["Id"] == copies[0]["Id"]  # node-0's copy, the first by name
    assert listed[0]["Enabled"] is False
    shown = await cli(manager3.tcp, "plugin", "ls", "--format", "{{.Name}} {{.Enabled}}")
    assert shown.split("\n").count(f"{name} false") == 1, shown
    for enabled, expected in (("false", [name]), ("true", [])):
        shown = await cli(manager3.tcp, "plugin", "ls", "--filter", f"enabled={enabled}",
                          "--format", "{{.Name}}")
        assert [n for n in shown.split() if n == name] == expected, (enabled, shown)
    inspected = await blocking(lambda: api.inspect_plugin("shoal-test/dummy"))
    assert inspected["Name"] == name and inspected["Id"] == copies[0]["Id"]

    assert await blocking(lambda: api.configure_plugin(name, {"DEBUG": "1"})) is True
    envs = [c["Settings"]["Env"] for c in await blocking(lambda: holders(engines, name))]
    assert envs == [["DEBUG=1"]] * 3, envs

    # Already disabled everywhere: every engine's own 409, joined one line per node.
    status, message = await blocking(lambda: status_of(lambda: api.disable_plugin(name)))
    assert status == 409, message
    assert sorted(line.split(":")[0] for line in message.splitlines()) == [
        "node-0", "node-1", "node-2"], message

    # Held by two nodes only: inspect answers from one, remove reaches both.
    await blocking(lambda: engines[0].remove_plugin(name))
    inspected = await blocking(lambda: api.inspect_plugin(name))
    assert inspected["Id"] == copies[1]["Id"]
    assert await blocking(lambda: api.remove_plugin(name)) is True
    assert not any([await blocking(lambda e=e: holds(e, name)) for e in engines])  # type: ignore[misc]
    status, message = await blocking(lambda: status_of(lambda: api.inspect_plugin(name)))
    assert (status, message) == (404, f'plugin "{name}" not found')
    status, message = await blocking(lambda: status_of(lambda: api.remove_plugin(name)))
    assert (status, message) == (404, f'plugin "{name}" not found')


async def test_plugin_push_privileges_and_pull(
    api: docker.APIClient, engines: list[docker.APIClient], manager3: Manager,
    sandbox3: Sandbox, plugin_dir: Path, plugin_names: list[str],
) -> None:
    assert sandbox3.registry is not None
    remote = f"{sandbox3.registry.address}/shoal-test/pushed:latest"
    local = "shoal-test/pulled:latest"
    plugin_names.extend([remote, local])
    await blocking(lambda: api.create_plugin(remote, str(plugin_dir)))
    await cli(manager3.tcp, "plugin", "push", remote)  # docker-py's push_plugin posts to /pull
    await blocking(lambda: api.remove_plugin(remote))

    expected = await blocking(lambda: engines[2].plugin_privileges(remote))
    assert {"Name": "network", "Description": "permissions to access a network",
            "Value": ["host"]} in expected, expected
    privileges = await blocking(lambda: api.plugin_privileges(remote))
    assert privileges == expected

    logs = await blocking(lambda: list(api.pull_plugin(remote, privileges, name=local)))
    assert not [m for m in logs if "error" in m], logs
    assert {m.get("id") for m in logs} == {"node-0", "node-1", "node-2"}, logs
    copies = await blocking(lambda: holders(engines, local))
    assert all(c["PluginReference"] == remote for c in copies), copies

    # The CLI's install (privileges, then pull) reads the same stream; here a second name.
    await blocking(lambda: api.remove_plugin(local))
    out = await cli(manager3.tcp, "plugin", "install", "--disable", "--grant-all-permissions",
                    "--alias", local, remote)
    assert "Installed plugin" in out, out
    assert len(await blocking(lambda: holders(engines, local))) == 3


# --- swarm mode -------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def swarm_left(engines: list[docker.APIClient]) -> AsyncIterator[None]:
    """Every engine out of any swarm when the test ends, whatever happened through shoal."""
    yield

    def leave_all() -> None:
        for engine in engines:
            if engine.info()["Swarm"]["LocalNodeState"] != "inactive":
                engine.leave_swarm(force=True)

    await blocking(leave_all)


def swarm_state(engine: docker.APIClient) -> tuple[str, bool]:
    swarm = engine.info()["Swarm"]
    return swarm["LocalNodeState"], bool(swarm["ControlAvailable"])


async def test_swarm_init_overlay_networks_and_leave(
    api: docker.APIClient, engines: list[docker.APIClient], swarm_left: None
) -> None:
    node_id = await blocking(lambda: api.init_swarm("127.0.0.1", listen_addr="0.0.0.0:4567"))
    states = [await blocking(lambda e=e: swarm_state(e)) for e in engines]  # type: ignore[misc]
    assert states == [("active", True), ("inactive", False), ("inactive", False)]
    assert (await blocking(lambda: api.nodes()))[0]["ID"] == node_id
    assert (await blocking(api.inspect_swarm))["ID"] == (
        await blocking(engines[0].inspect_swarm))["ID"]
    status, message = await blocking(lambda: status_of(lambda: api.init_swarm("127.0.0.1")))
    assert status == 503 and "already part of a swarm" in message, message

    # Swarm-scoped creates go to the manager; local ones are placed as ever.
    overlay = (await blocking(lambda: api.create_network(
        "shoal-overlay", driver="overlay", attachable=True, scope="swarm")))["Id"]
    on_manager = await blocking(lambda: engines[0].inspect_network(overlay))
    assert (on_manager["Scope"], on_manager["Attachable"]) == ("swarm", True)
    local = (await blocking(lambda: api.create_network("shoal-local", scope="local")))["Id"]
    for net, scope, others in ((overlay, "swarm", ("local", "global")),
                               (local, "local", ("swarm", "global"))):
        got = await blocking(lambda n=net, s=scope: api.inspect_network(n, scope=s))  # type: ignore[misc]
        assert got["Id"] == net
        for other in others:
            status, _ = await blocking(
                lambda n=net, o=other: status_of(lambda: api.inspect_network(n, scope=o)))  # type: ignore[misc]
            assert status == 404, (net, other)
    ingress = await blocking(lambda: api.inspect_network("ingress", scope="swarm"))
    assert ingress["Ingress"] is True

    assert await blocking(lambda: api.leave_swarm(force=True)) is True
    assert await blocking(lambda: swarm_state(engines[0])) == ("inactive", False)
    status, message = await blocking(lambda: status_of(api.inspect_swarm))
    assert status == 503 and message.startswith("This node is not a swarm manager"), message
    status, message = await blocking(lambda: status_of(lambda: api.inspect_network(overlay)))
    assert status == 404, message  # the swarm's networks went with it
    await blocking(lambda: api.remove_network(local))


async def test_swarm_made_on_an_engine_directly_is_found(
    api: docker.APIClient, engines: list[docker.APIClient], swarm_left: None
) -> None:
    cluster_id = await blocking(lambda: (engines[1].init_swarm("127.0.0.1"),
                                         engines[1].inspect_swarm()["ID"])[1])

    async def found() -> bool:
        try:
            return (await blocking(api.inspect_swarm))["ID"] == cluster_id
        except docker.errors.APIError:
            return False

    await wait_until(found, 30, "shoal passing /swarm to node-1")
    # init goes to the manager, which answers as an engine already in a swarm
    status, message = await blocking(lambda: status_of(lambda: api.init_swarm("127.0.0.1")))
    assert status == 503 and "already part of a swarm" in message, message
    states = [await blocking(lambda e=e: swarm_state(e)) for e in engines]  # type: ignore[misc]
    assert states == [("inactive", False), ("active", True), ("inactive", False)]
    status, message = await blocking(lambda: status_of(
        lambda: api.join_swarm(["127.0.0.1:2377"], "token")))
    assert status == 501, message

