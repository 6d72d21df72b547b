"""shoal over many simulated engines: adoption, reads, creates, memory and CPU, per size.

For each size N it starts `shoal sandbox up --simulated N --containers K` and a
`shoal manage` over it, waits for every engine to be Healthy and every container cached,
then measures reads (through shoal, and straight against one simulated engine for the
ratio), create+start with 1 and 8 clients, the manager's peak RSS, its CPU per operation
and while idle. Nothing asserts timing; a phase that runs past its timeout prints
"timed out" and the rest of that size is skipped.

    .venv/bin/python bench/bench_scale.py [--sizes 100,1000,5000] [--containers 30]
        [--samples 200] [--heavy-samples 20] [--creates 40] [--idle 60]
        [--manage-args '--strategy binpack'] [--json out.json]
        [--profile /tmp/profile]      # py-spy: /tmp/profile-N1000-{adopt,reads,create,idle}.txt
    .venv/bin/python bench/bench_scale.py --summarize-profile /tmp/profile-N1000-adopt.txt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.manager import free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READ_TIMEOUT = 120.0
NOFILE = 1_048_576
PROFILE_SUFFIX = {"raw": "txt", "flamegraph": "svg", "speedscope": "json"}


class PhaseTimeout(Exception):
    """A phase ran past its budget: the rest of this size is skipped."""


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


async def wait_quiet(pid: int, share: float = 0.05, window: float = 0.5,
                     budget: float = 30.0) -> float | None:
    """Seconds until the manager's CPU over a WINDOW falls under SHARE of a core (the
    work adoption leaves behind: the first list's encoding, a garbage collection), so the
    per-operation CPU figures that follow are the operations' own."""
    start = time.monotonic()
    while time.monotonic() - start < budget:
        cpu0 = cpu_seconds(pid)
        await asyncio.sleep(window)
        if cpu_seconds(pid) - cpu0 < share * window:
            return time.monotonic() - start
    return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int, field_name: str = "VmHWM") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Report:
    """The figures of one size, printed as one table."""

    n: int
    k: int
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.rows.append((name, value))
        print(f"  {name}: {value}", file=sys.stderr, flush=True)

    def table(self) -> str:
        width = max(len(name) for name, _ in self.rows) if self.rows else 10
        lines = [f"N={self.n:,} engines, K={self.k} containers each "
                 f"({self.n * self.k:,} containers)",
                 f"| {'measure'.ljust(width)} | value |",
                 f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {name.ljust(width)} | {value} |" for name, value in self.rows]
        return "\n".join(lines)


class Process:
    """A child started here and stopped here, by PID."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, stdout: int = asyncio.subprocess.DEVNULL,
                    log_path: str | None = None) -> None:
        if log_path is None:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, stdout=stdout, stderr=asyncio.subprocess.DEVNULL)
            return
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(*self.args, stdout=log, stderr=log)
        finally:
            os.close(log)

    async def stop(self, timeout: float = 15.0) -> bytes:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return b""
        proc.send_signal(signal.SIGTERM)
        try:
            out = await asyncio.wait_for(proc.stdout.read() if proc.stdout else asyncio.sleep(0),
                                         timeout)
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return b""
        return out if isinstance(out, bytes) else b""


class Profiler:
    """py-spy recording the manager, one raw file per phase; does nothing without a prefix.

    py-spy pauses the process for each sample, so the figures of a profiled run are inflated:
    take the table from a run without `--profile`.
    """

    def __init__(self, py_spy: str, prefix: str, fmt: str, pid: int, n: int) -> None:
        self.py_spy, self.prefix, self.fmt, self.pid, self.n = py_spy, prefix, fmt, pid, n

    @contextlib.asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        if not self.prefix:
            yield
            return
        out = f"{self.prefix}-N{self.n}-{name}.{PROFILE_SUFFIX[self.fmt]}"
        spy = Process("py-spy", [self.py_spy, "record", "--pid", str(self.pid), "--format",
                                 self.fmt, "--rate", "50", "-o", out])
        await spy.start()
        try:
            yield
        finally:
            proc = spy.proc
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
                try:
                    await asyncio.wait_for(proc.wait(), 60)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            print(f"  profile of {name}: {out}", file=sys.stderr, flush=True)


async def start_simulator(n: int, k: int, seed: int) -> tuple[Process, str, int]:
    sim = Process("simulator", [sys.executable, "-m", "shoal", "sandbox", "up", "--simulated",
                                str(n), "--containers", str(k), "--seed", str(seed)])
    await sim.start(stdout=asyncio.subprocess.PIPE)
    assert sim.proc is not None and sim.proc.stdout is not None
    line = await asyncio.wait_for(sim.proc.stdout.readline(), 60 + n / 50)
    text = line.decode().strip()
    if not text.startswith("discovery: "):
        await sim.stop()
        raise RuntimeError(f"simulator did not print its discovery: {text!r}")
    discovery = text.removeprefix("discovery: ")
    first_port = int(discovery.split("[", 1)[1].split(":", 1)[0]) if "[" in discovery \
        else int(discovery.rsplit(":", 1)[1])
    return sim, discovery, first_port


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT)) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {url}: {resp.status} {body[:200]!r}")
        return json.loads(body)


def node_states(info: dict[str, Any]) -> list[str]:
    return [str(v) for k, v in info.get("SystemStatus") or [] if k.strip() == "└ Status"]


def count_registered(log_path: str) -> int:
    with open(log_path, errors="replace") as f:
        return f.read().count("Registered Engine")


async def wait_logged(log_path: str, text: str, started: float,
                      timeout: float) -> float | None:
    """Seconds from `started` until the manager logs TEXT (None past the timeout)."""
    def logged() -> bool:
        with open(log_path, errors="replace") as f:
            return text in f.read()

    while time.monotonic() < started + timeout:
        if await asyncio.to_thread(logged):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    return None


async def wait_adopted(session: aiohttp.ClientSession, url: str, log_path: str, n: int, k: int,
                       started: float, timeout: float, report: Report, pid: int) -> None:
    """All Healthy, from the manager's "Registered Engine" log lines (polling `/info` would
    load the very manager being timed), then every container cached, from `/info`."""
    deadline = started + timeout
    healthy_at: float | None = None
    registered = 0
    while time.monotonic() < deadline and healthy_at is None:
        registered = await asyncio.to_thread(count_registered, log_path)
        if registered >= n:
            healthy_at = time.monotonic() - started
            # CPU, unlike wall time, does not depend on what else shares the cores.
            report.add("manager CPU until all Healthy", f"{cpu_seconds(pid):.1f} s")
        else:
            await asyncio.sleep(0.1)
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError, RuntimeError, TimeoutError):
            info = await get_json(session, url + "/info")
            states = node_states(info)
            if len(states) >= n and all(s == "Healthy" for s in states):
                if healthy_at is None:  # the log said nothing: /info's time is the best known
                    healthy_at = time.monotonic() - started
                report.add("all engines Healthy after start", f"{healthy_at:.1f} s")
                if int(info.get("Containers") or 0) >= n * k:
                    cached_at = time.monotonic() - started
                    report.add("every container cached after start", f"{cached_at:.1f} s")
                    return
                break
        await asyncio.sleep(1.0)
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError, RuntimeError, TimeoutError):
            info = await get_json(session, url + "/info")
            if int(info.get("Containers") or 0) >= n * k:
                cached_at = time.monotonic() - started
                report.add("every container cached after start", f"{cached_at:.1f} s")
                return
        await asyncio.sleep(1.0)
    raise PhaseTimeout(f"adoption ({registered} of {n} engines registered)")


async def timed(count: int, call: Callable[[int], Awaitable[None]], budget: float) -> list[float]:
    samples: list[float] = []
    deadline = time.monotonic() + budget
    for i in range(count):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def fmt(samples: list[float]) -> str:
    if not samples:
        return "timed out"
    return (f"{percentile(samples, 50):.1f} / {percentile(samples, 90):.1f} / "
            f"{percentile(samples, 99):.1f} ms (n={len(samples)})")


async def reads(session: aiohttp.ClientSession, base: str, ids: list[str], names: list[str],
                args: argparse.Namespace, pid: int | None, label: str,
                report: Report) -> dict[str, float]:
    """The five reads; returns each one's p50 for the shoal/direct ratio."""

    async def fetch(path: str) -> None:
        async with session.get(base + path,
                               timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT)) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status}")

    plan: list[tuple[str, int, Callable[[int], Awaitable[None]]]] = [
        ("/info", args.heavy_samples, lambda i: fetch("/info")),
        ("ps -a", args.heavy_samples, lambda i: fetch("/containers/json?all=1")),
        ("ps", args.heavy_samples, lambda i: fetch("/containers/json")),
        ("inspect by ID", args.samples, lambda i: fetch(f"/containers/{ids[i % len(ids)]}/json")),
        ("inspect by name", args.samples,
         lambda i: fetch(f"/containers/{names[i % len(names)]}/json")),
    ]
    p50: dict[str, float] = {}
    for name, count, call in plan:
        # Warm-ups apart: the first read after adoption does what the adoption's changes
        # left to do (every node block, every list entry), shown as "first", and the CPU
        # per operation is that of the steady reads that follow.
        warm = await timed(min(3, count), call, args.phase_timeout)
        cpu0 = cpu_seconds(pid) if pid else 0.0
        samples = await timed(count, call, args.phase_timeout)
        if not samples:
            raise PhaseTimeout(name)
        p50[name] = percentile(samples, 50)
        extra = f"; first {warm[0]:.1f} ms" if warm else ""
        if pid:
            extra += f"; manager CPU {(cpu_seconds(pid) - cpu0) * 1000 / len(samples):.1f} ms/op"
        report.add(f"{label} {name} p50/p90/p99", fmt(samples) + extra)
    return p50


async def creates(session: aiohttp.ClientSession, base: str, clients: int, total: int,
                  pid: int, budget: float, tag: str, report: Report) -> None:
    """create+start pairs, `clients` at a time; latency of each pair and the overall rate."""
    samples: list[float] = []
    counter = iter(range(total))
    deadline = time.monotonic() + budget

    async def one(i: int) -> None:
        body = {"Image": "busybox:latest", "Cmd": ["sleep", "1000"],
                "Labels": {"bench": tag}, "HostConfig": {"Memory": 16 * 1024**2}}
        start = time.perf_counter()
        async with session.post(base + f"/containers/create?name=bench-{tag}-{i}", json=body,
                                timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT)) as resp:
            created = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"create: {resp.status} {created}")
        async with session.post(base + f"/containers/{created['Id']}/start",
                                timeout=aiohttp.ClientTimeout(total=READ_TIMEOUT)) as resp:
            await resp.read()
            if resp.status not in (204, 304):
                raise RuntimeError(f"start: {resp.status}")
        samples.append((time.perf_counter() - start) * 1000)

    async def worker() -> None:
        for i in counter:
            if time.monotonic() > deadline:
                return
            await one(i)

    cpu0 = cpu_seconds(pid)
    wall0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(clients)))
    except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
        raise PhaseTimeout(f"create+start x{clients} ({type(exc).__name__}: {exc})") from exc
    wall = time.perf_counter() - wall0
    if not samples:
        raise PhaseTimeout(f"create+start x{clients}")
    cpu = (cpu_seconds(pid) - cpu0) * 1000 / len(samples)
    report.add(f"create+start, {clients} client{'s' if clients > 1 else ''} p50/p99",
               f"{percentile(samples, 50):.0f} / {percentile(samples, 99):.0f} ms, "
               f"{len(samples) / wall:.1f} containers/s (n={len(samples)}); "
               f"manager CPU {cpu:.0f} ms/op")


async def run_size(n: int, args: argparse.Namespace) -> Report:
    report = Report(n, args.containers)
    print(f"== N={n}", file=sys.stderr, flush=True)
    sim, discovery, first_port = await start_simulator(n, args.containers, args.seed)
    port = free_port()
    manager = Process("manager", [sys.executable, "-m", "shoal", "manage", "-H",
                                  f"127.0.0.1:{port}", *args.manage_args.split(), discovery])
    base = f"http://127.0.0.1:{port}"
    direct = f"http://127.0.0.1:{first_port}"
    connector = aiohttp.TCPConnector(limit=32)
    log_path = tempfile.mktemp(prefix=f"bench-scale-manage-N{n}-", suffix=".log")
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.monotonic()
            await manager.start(log_path=log_path)
            profiler = Profiler(args.py_spy, args.profile, args.profile_format, manager.pid, n)
            try:
                async with profiler.phase("adopt"):
                    await wait_adopted(session, base, log_path, n, args.containers, started,
                                       args.adopt_timeout, report, manager.pid)
                inspected = await wait_logged(
                    log_path, "Every adopted container inspected", started,
                    args.adopt_timeout if args.containers else 0.0)
                report.add("every container inspected after start",
                           f"{inspected:.1f} s" if inspected is not None else "not logged")
                report.add("manager CPU until every container inspected",
                           f"{cpu_seconds(manager.pid):.1f} s")
                report.add("manager after adoption: RSS, peak, fds",
                           f"{peak_rss_mb(manager.pid, 'VmRSS'):.0f} MB, "
                           f"{peak_rss_mb(manager.pid):.0f} MB, {open_fds(manager.pid):,}")
                listing = await get_json(session, base + "/containers/json?all=1")
                report.add("ps -a entries", f"{len(listing):,}")
                settled = await wait_quiet(manager.pid)
                report.add("manager quiet (CPU < 5% over 0.5 s) after adoption",
                           f"{settled:.1f} s" if settled is not None else "not within 30 s")
                picks = random.Random(1).sample(listing, min(200, len(listing)))
                ids = [c["Id"] for c in picks]
                names = [c["Names"][0].lstrip("/") for c in picks]
                async with profiler.phase("reads"):
                    shoal_p50 = await reads(session, base, ids, names, args, manager.pid,
                                            "shoal", report)
                direct_listing = await get_json(session, direct + "/containers/json?all=1")
                d_ids = [c["Id"] for c in direct_listing]
                d_names = [c["Names"][0].lstrip("/") for c in direct_listing]
                direct_p50 = await reads(session, direct, d_ids, d_names, args, None,
                                         "engine", report)
                report.add("shoal/engine p50 ratio", ", ".join(
                    f"{k} {shoal_p50[k] / direct_p50[k]:.1f}x" for k in shoal_p50))
                async with profiler.phase("create"):
                    await creates(session, base, 1, args.creates, manager.pid,
                                  args.phase_timeout, "a", report)
                    await creates(session, base, 8, args.creates * 2, manager.pid,
                                  args.phase_timeout, "b", report)
                cpu0, wall0 = cpu_seconds(manager.pid), time.monotonic()
                async with profiler.phase("idle"):
                    await asyncio.sleep(args.idle)
                idle = (cpu_seconds(manager.pid) - cpu0) / (time.monotonic() - wall0) * 100
                report.add(f"manager CPU idle ({args.idle:.0f} s after the runs)",
                           f"{idle:.1f}% of a core")
            except PhaseTimeout as exc:
                report.add(f"{exc}", "timed out (rest of this size skipped)")
            report.add("manager peak RSS (VmHWM)", f"{peak_rss_mb(manager.pid):.0f} MB")
            with contextlib.suppress(aiohttp.ClientError, OSError, RuntimeError, TimeoutError):
                stats = await get_json(session, direct + "/_sim/stats")
                gaps = stats.get("unknown") or {}
                report.add("simulator 501s (routes not simulated)",
                           ", ".join(f"{k} x{v}" for k, v in sorted(gaps.items())) or "none")
    finally:
        await manager.stop()
        await sim.stop()
        with contextlib.suppress(OSError):
            os.unlink(log_path)
    return report


def summarize_profile(path: str, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's `--format raw` output."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = [re.sub(r":\d+\)$", ")", fr) for fr in stack.split(";")[2:]]
            if frames:
                own[frames[-1]] = own.get(frames[-1], 0) + count
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + count
    lines = [f"{total} samples", "self %  function"]
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{count * 100 / max(total, 1):5.1f}  {frame}")
    lines.append("incl %  function")
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{count * 100 / max(total, 1):5.1f}  {frame}")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    # The manager holds several connections per engine: children inherit this limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))  # root may raise `hard`
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"RLIMIT_NOFILE: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}", file=sys.stderr)
    reports = []
    for n in args.sizes:
        reports.append(await run_size(n, args))
    print()
    for report in reports:
        print(report.table())
        print()
    if args.json:
        data = [{"n": r.n, "k": r.k, "rows": dict(r.rows)} for r in reports]
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(data, indent=2) + "\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[100, 1000, 5000])
    parser.add_argument("--containers", type=int, default=30)
    parser.add_argument("--samples", type=int, default=200, help="inspects per kind")
    parser.add_argument("--heavy-samples", type=int, default=20,
                        help="/info, ps -a and ps requests each")
    parser.add_argument("--creates", type=int, default=40,
                        help="create+start pairs with 1 client (twice as many with 8)")
    parser.add_argument("--idle", type=float, default=60.0, help="idle window, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adopt-timeout", type=float, default=600.0)
    parser.add_argument("--phase-timeout", type=float, default=300.0)
    parser.add_argument("--manage-args", default="",
                        help="extra `shoal manage` flags, e.g. '--strategy binpack'")
    parser.add_argument("--json", default="", help="also write the tables to this file")
    parser.add_argument("--profile", default="", help="py-spy output prefix (off if empty)")
    parser.add_argument("--profile-format", default="raw", choices=("raw", "flamegraph",
                                                                    "speedscope"))
    parser.add_argument("--py-spy", default=str(Path(sys.executable).parent / "py-spy"))
    return parser.parse_args()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--summarize-profile":
        print(summarize_profile(sys.argv[2]))
    else:
        uvloop.run(main(parse_args()))
