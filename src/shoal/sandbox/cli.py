"""Persistent-sandbox commands (`shoal sandbox up|down|ls`), as plain async functions."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shoal.sandbox import procs, state
from shoal.sandbox.cluster import Sandbox
from shoal.sandbox.node import SandboxNode, ping
from shoal.sandbox.simulated import SimEngine, SimServer, engine_spec
from shoal.sandbox.simulated.server import LOW_PORT

DEFAULT_TAG = "dev"


def parse_labels(specs: Sequence[str], n: int) -> list[dict[str, str]]:
    """`node-1:storage=ssd` labels one node, `zone=a` labels every node."""
    labels: list[dict[str, str]] = [{} for _ in range(n)]
    for spec in specs:
        target, _, kv = spec.partition(":") if ":" in spec.split("=", 1)[0] else ("", "", spec)
        key, eq, value = kv.partition("=")
        if not eq or not key:
            raise ValueError(f"label must be [node-I:]KEY=VALUE: {spec!r}")
        if not target:
            indexes = list(range(n))
        else:
            name = target.removeprefix("node-")
            if not name.isdigit() or int(name) >= n:
                raise ValueError(f"no such node in a {n}-node sandbox: {target!r}")
            indexes = [int(name)]
        for i in indexes:
            labels[i][key] = value
    return labels


async def sandbox_up(n: int, labels: Sequence[str] = (), tag: str = DEFAULT_TAG) -> str:
    """Start N detached nodes (they outlive this process) and return a usage summary."""
    sandbox = Sandbox(n, tag=tag, labels=parse_labels(labels, n), persistent=True)
    try:
        await sandbox.up()
    except BaseException:
        await state.teardown(tag)
        raise
    lines = [f"discovery: {sandbox.discovery}"]
    for node in sandbox.nodes:
        extra = " ".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
        lines.append(f"{node.name}  {node.addr}  ip={node.ip}  {extra}".rstrip())
    first = sandbox.nodes[0]
    lines.append(f"export DOCKER_HOST={first.docker_host}   # talk to {first.name} directly")
    lines.append(f"state: {state.state_path(tag)}; stop with: shoal sandbox down --tag {tag}")
    return "\n".join(lines)


async def sandbox_simulated(
    n: int,
    containers: int,
    labels: Sequence[str] = (),
    *,
    emit: Callable[[str], None],
    seed: int = 0,
    low_port: int = LOW_PORT,
    stop: asyncio.Event | None = None,
) -> dict[str, int]:
    """Serve N simulated engines in the foreground until SIGINT/SIGTERM (or `stop`).

    Prints the discovery string first, and on the way out the count of each request the
    simulator could not answer (501), which it also returns.
    """
    per_node = parse_labels(labels, n)
    engines = [
        SimEngine(engine_spec(i, seed, [f"{k}={v}" for k, v in sorted(per_node[i].items())]),
                  containers, seed)
        for i in range(n)
    ]
    server = SimServer(engines, low_port=low_port)
    stopping = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await server.start()
        emit(f"discovery: {server.discovery}")
        emit(f"{n} simulated engines, {n * containers} containers; "
             f"node-0 at tcp://127.0.0.1:{server.ports[0]}; stop with Ctrl-C or SIGTERM")
        await stopping.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await server.stop()
    gaps = dict(server.unknown)
    emit(f"requests: {server.requests}; unimplemented (501): "
         + (", ".join(f"{k} x{v}" for k, v in sorted(gaps.items())) or "none"))
    return gaps


async def sandbox_down(tag: str = DEFAULT_TAG) -> None:
    """Stop everything the state file of TAG records, by PID, and remove its network and files."""
    await state.teardown(tag)


@dataclass(frozen=True)
class NodeStatus:
    """One line of `shoal sandbox ls`."""

    name: str
    addr: str
    ip: str
    pid: int | None
    running: bool
    responding: bool
    labels: dict[str, str]


async def sandbox_ls(tag: str = DEFAULT_TAG) -> list[NodeStatus]:
    """Nodes of TAG with whether their process lives and their engine answers /_ping."""
    data = await state.read_state(tag)
    if data is None:
        raise procs.SandboxError(f"no sandbox with tag {tag!r} ({state.state_path(tag)} missing)")
    out = []
    for raw in data.get("nodes", []):
        node = SandboxNode.from_state(raw)
        up = await ping("127.0.0.1", node.host_port, timeout=1) if node.running else False
        out.append(NodeStatus(node.name, node.addr, node.ip, node.init_pid, node.running, up,
                              dict(node.labels)))
    return out
