"""The sandbox state file: what was started (PIDs, ports, paths), so any process can stop it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from shoal.sandbox import netns, procs

STATE_ROOT = "/run/shoal-sandbox"


def state_path(tag: str) -> str:
    return os.path.join(STATE_ROOT, tag, "state.json")


def owner() -> dict[str, int | None]:
    """This process, as recorded in a non-persistent sandbox's state: when it dies, so may go
    the sandbox (see sweep_orphans)."""
    pid = os.getpid()
    return {"pid": pid, "started": procs.start_time(pid)}


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.asynccontextmanager
async def host_lock(timeout: float = 120) -> AsyncIterator[None]:
    """Machine-wide lock: concurrent sandboxes (several pytest runs) must not pick the same
    subnet or sweep each other's state mid-creation."""
    await asyncio.to_thread(os.makedirs, STATE_ROOT, exist_ok=True)
    fd = os.open(os.path.join(STATE_ROOT, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise procs.SandboxError(f"sandbox host lock busy for {timeout}s")
            await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # also releases the lock


def _write(path: str, data: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Nodes boot in parallel and each saves the state: every writer needs its own temp file.
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    return data


async def write_state(tag: str, data: dict[str, Any]) -> None:
    await asyncio.to_thread(_write, state_path(tag), data)


async def read_state(tag: str) -> dict[str, Any] | None:
    return await asyncio.to_thread(_read, state_path(tag))


async def _kill_recorded(state: dict[str, Any]) -> None:
    """SIGKILL each recorded node init (takes its pid ns down), then the wrappers, registry."""
    nodes = state.get("nodes", [])
    for node in nodes:
        if node.get("init_pid"):
            procs.send(node["init_pid"], signal.SIGKILL, node.get("init_started"))
    for node in nodes:
        if node.get("pid"):
            await procs.stop(node["pid"], node.get("pid_started"))
    reg = state.get("registry") or {}
    if reg.get("pid"):
        await procs.stop(reg["pid"], reg.get("started"), term_first=2)


async def _kill_netns_residents(ns: str) -> None:
    """Anything still living in one of our namespaces is ours: kill it by PID."""
    for _ in range(50):
        pids = await netns.netns_pids(ns)
        if not pids:
            return
        for pid in pids:
            procs.send(pid, signal.SIGKILL, None)
        await asyncio.sleep(0.1)
    raise procs.SandboxError(f"processes in netns {ns} survive SIGKILL")


async def sweep_orphans() -> list[str]:
    """Tear down non-persistent sandboxes whose owning process is gone (a crashed test run)."""
    swept = []
    names = await asyncio.to_thread(lambda: os.listdir(STATE_ROOT)
                                    if os.path.isdir(STATE_ROOT) else [])
    for tag in sorted(names):
        data = await read_state(tag)
        if data is None or data.get("persistent"):
            continue
        own = data.get("owner") or {}
        if own.get("pid") and not procs.alive(own["pid"], own.get("started")):
            await teardown(tag)
            swept.append(tag)
    return swept


async def teardown(tag: str, *, remove_workdir: bool = True) -> None:
    """Stop everything of TAG (this run's or a crashed run's) and remove its network.

    Idempotent: every step tolerates the thing being already gone.
    """
    state = await read_state(tag)
    if state is not None:
        await _kill_recorded(state)
    for ns in await netns.list_netns(tag):
        await _kill_netns_residents(ns)
        await netns.delete_node_net(ns)
    await netns.delete_links(tag)
    if state is not None and remove_workdir and state.get("workdir"):
        await asyncio.to_thread(shutil.rmtree, state["workdir"], True)
    await asyncio.to_thread(shutil.rmtree, os.path.dirname(state_path(tag)), True)
