"""Process helpers for the sandbox: run commands, spawn detached daemons, stop them by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class SandboxError(RuntimeError):
    """A sandbox step failed; the message says which command and why."""


@dataclass(frozen=True)
class Result:
    """Outcome of a finished command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


async def run(
    *args: str,
    check: bool = True,
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
    stdin_data: bytes | None = None,
) -> Result:
    """Run a command to completion; on timeout it is killed so nothing outlives the call."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin_data), timeout)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    res = Result(tuple(args), proc.returncode or 0, out.decode(errors="replace"),
                 err.decode(errors="replace"))
    if check and res.returncode != 0:
        raise SandboxError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


async def spawn(
    args: Sequence[str], *, env: Mapping[str, str], log_path: str, pass_fds: Sequence[int] = ()
) -> subprocess.Popen[bytes]:
    """Start a long-lived process in its own session, so it survives its parent and Ctrl-C.

    Popen (in a thread) rather than an asyncio subprocess: closing an asyncio subprocess
    transport kills the child, which would break the persistent CLI mode.
    """

    def _start() -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                list(args), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dict(env), pass_fds=tuple(pass_fds), start_new_session=True,
            )

    return await asyncio.to_thread(_start)


def start_time(pid: int) -> int | None:
    """Kernel start time of a process (clock ticks since boot), None if it is gone.

    Recorded with every PID so a later stop never hits a recycled PID.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def alive(pid: int, started: int | None) -> bool:
    """Whether PID still names the process that was started at STARTED (zombies count as gone)."""
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def children(pid: int) -> list[int]:
    """Direct children of PID."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def send(pid: int, sig: signal.Signals, started: int | None) -> bool:
    """Signal PID if it is still the process we started; True if the signal was sent."""
    if not alive(pid, started):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


async def wait_gone(pid: int, started: int | None, timeout: float,
                    proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll (bounded) until PID has exited; reaps it when it is our child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return True
        if proc is None and not alive(pid, started):
            return True
        await asyncio.sleep(0.05)
    return False


async def stop(pid: int, started: int | None, *, term_first: float = 0.0,
               proc: subprocess.Popen[bytes] | None = None) -> None:
    """Stop a process by PID: optional SIGTERM grace period, then SIGKILL, then wait."""
    if term_first > 0 and send(pid, signal.SIGTERM, started):
        if await wait_gone(pid, started, term_first, proc):
            return
    send(pid, signal.SIGKILL, started)
    if not await wait_gone(pid, started, 15, proc):
        raise SandboxError(f"process {pid} did not exit after SIGKILL")
