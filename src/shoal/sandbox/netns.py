"""Network plumbing for sandbox nodes: one bridge per sandbox, one netns + veth per node."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import zlib
from dataclasses import dataclass

from shoal.sandbox.procs import SandboxError, run

TAG_RE = re.compile(r"^[a-z0-9]{1,8}$")
NODE_IP_OFFSET = 10


@dataclass(frozen=True)
class Net:
    """Names and addresses of one sandbox's network (all derived from tag and octet)."""

    tag: str
    octet: int

    @property
    def bridge(self) -> str:
        return f"shoalbr{self.tag}"

    @property
    def bridge_ip(self) -> str:
        return f"10.{self.octet}.0.1"

    @property
    def cidr(self) -> str:
        return f"10.{self.octet}.0.0/16"

    def netns(self, index: int) -> str:
        return f"shoal-{self.tag}-{index}"

    def veth(self, index: int) -> str:
        return f"shv{self.tag}n{index}"

    def node_ip(self, index: int) -> str:
        return f"10.{self.octet}.{(NODE_IP_OFFSET + index) // 256}.{(NODE_IP_OFFSET + index) % 256}"


def check_tag(tag: str) -> str:
    """Tags end up in interface names (15 chars max), hence the tight format."""
    if not TAG_RE.match(tag):
        raise ValueError(f"sandbox tag must match {TAG_RE.pattern}: {tag!r}")
    return tag


async def used_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks already routed or addressed on the host."""
    res = await run("ip", "-4", "-o", "addr", "show")
    nets = [ipaddress.IPv4Interface(m).network for m in re.findall(r"inet (\S+)", res.stdout)]
    routes = await run("ip", "-4", "route", "show", "table", "all")
    for line in routes.stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("local", "broadcast", "unreachable", "blackhole", "prohibit"):
            first = line.split()[1]
        if first == "default":
            continue
        try:
            nets.append(ipaddress.IPv4Network(first, strict=False))
        except ValueError:
            continue
    return nets


async def pick_octet(tag: str) -> int:
    """Second octet of 10.X.0.0/16 for TAG: env SHOAL_SANDBOX_OCTET, else a tag hash that clashes
    with nothing on the host (call after removing this tag's leftovers)."""
    env = os.environ.get("SHOAL_SANDBOX_OCTET")
    if env:
        return int(env)
    used = await used_networks()
    start = zlib.crc32(tag.encode()) % 128
    for step in range(128):
        octet = 64 + (start + step) % 128
        cand = ipaddress.ip_network(f"10.{octet}.0.0/16")
        if not any(cand.overlaps(n) for n in used):
            return octet
    raise SandboxError("no free 10.X.0.0/16 subnet for the sandbox bridge")


async def create_bridge(net: Net) -> None:
    """Bridge with the sandbox gateway address; the registry listens there."""
    await run("ip", "link", "add", net.bridge, "type", "bridge")
    await run("ip", "addr", "add", f"{net.bridge_ip}/16", "dev", net.bridge)
    await run("ip", "link", "set", net.bridge, "up")


async def create_node_net(net: Net, index: int) -> None:
    """Netns with loopback and eth0 (veth to the bridge); no default route, so nothing leaves."""
    ns, veth = net.netns(index), net.veth(index)
    await run("ip", "netns", "add", ns)
    await run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    await run("ip", "link", "set", veth, "master", net.bridge, "up")
    await run("ip", "-n", ns, "addr", "add", f"{net.node_ip(index)}/16", "dev", "eth0")
    await run("ip", "-n", ns, "link", "set", "eth0", "up")
    await run("ip", "-n", ns, "link", "set", "lo", "up")


async def list_netns(tag: str) -> list[str]:
    """Names of this tag's namespaces still present (leftovers included)."""
    res = await run("ip", "netns", "list", check=False)
    prefix = f"shoal-{tag}-"
    names = [line.split()[0] for line in res.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix) and n[len(prefix):].isdigit()]


async def netns_pids(ns: str) -> list[int]:
    """PIDs of processes living in network namespace NS."""
    res = await run("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


async def delete_node_net(ns: str) -> None:
    """Deleting the netns also deletes its veth pair."""
    await run("ip", "netns", "del", ns, check=False)


async def delete_links(tag: str) -> None:
    """Remove this tag's bridge and any veth left on the host."""
    res = await run("ip", "-o", "link", "show", check=False)
    names = [m for m in re.findall(r"^\d+: ([^:@]+)", res.stdout, re.M)]
    for name in names:
        if re.fullmatch(rf"shv{tag}n\d+", name):
            await run("ip", "link", "del", name, check=False)
    if f"shoalbr{tag}" in names:
        await run("ip", "link", "del", f"shoalbr{tag}", check=False)


async def wait_tcp(host: str, port: int, timeout: float) -> bool:
    """Bounded poll until HOST:PORT accepts a connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return True
    return False
