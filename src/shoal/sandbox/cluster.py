"""A sandbox cluster: N dockerd nodes on one bridge, a local registry, busybox preloaded."""

from __future__ import annotations

import asyncio
import os
import shutil
from types import TracebackType
from typing import Any

from shoal.sandbox import images, netns, procs, state
from shoal.sandbox.node import DOCKER_INIT, DOCKERD, SandboxNode, listen_socket
from shoal.sandbox.registry import REGISTRY_BIN, Registry

WORK_ROOT = "/var/tmp/shoal-sandbox"
REQUIRED = (DOCKERD, DOCKER_INIT, "/usr/bin/nsenter", "/usr/bin/unshare", "/bin/bash",
            images.BUSYBOX_BIN)


def check_host(registry: bool) -> None:
    """Fail loudly (never skip) when this machine cannot run a sandbox."""
    if os.geteuid() != 0:
        raise procs.SandboxError("the sandbox needs root (network and pid namespaces)")
    missing = [p for p in REQUIRED + ((REGISTRY_BIN,) if registry else ()) if not os.path.exists(p)]
    if shutil.which("ip") is None:
        missing.append("ip (iproute2)")
    if missing:
        raise procs.SandboxError(f"sandbox prerequisites missing: {', '.join(missing)}")


class Sandbox:
    """N nodes that look like separate hosts; use as `async with Sandbox(3) as sb:`.

    `persistent=True` leaves everything running after `up()` returns and the process exits
    (the CLI mode); `state.teardown(tag)` or `down()` stops it later by the recorded PIDs.
    """

    def __init__(
        self,
        n: int,
        *,
        tag: str = "t",
        labels: list[dict[str, str]] | None = None,
        workdir: str | None = None,
        registry: bool = True,
        persistent: bool = False,
        octet: int | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("a sandbox needs at least one node")
        if labels is not None and len(labels) > n:
            raise ValueError("more label sets than nodes")
        self.n = n
        self.tag = netns.check_tag(tag)
        self.labels = [dict(x) for x in (labels or [])] + [{} for _ in range(n - len(labels or []))]
        self.workdir = workdir or os.path.join(WORK_ROOT, tag)
        self.use_registry = registry
        self.persistent = persistent
        self.octet = octet
        self.nodes: list[SandboxNode] = []
        self.registry: Registry | None = None
        self.net: netns.Net | None = None

    @property
    def discovery(self) -> str:
        return "nodes://" + ",".join(node.addr for node in self.nodes)

    async def __aenter__(self) -> Sandbox:
        try:
            await self.up()
        except BaseException:
            await self.down()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.down()

    def to_state(self) -> dict[str, Any]:
        assert self.net is not None
        reg = self.registry
        return {
            "tag": self.tag, "persistent": self.persistent, "workdir": self.workdir,
            "owner": None if self.persistent else state.owner(),
            "octet": self.net.octet, "bridge": self.net.bridge, "bridge_ip": self.net.bridge_ip,
            "discovery": self.discovery,
            "registry": None if reg is None else {"pid": reg.pid, "started": reg.started,
                                                  "address": reg.address},
            "nodes": [node.to_state() for node in self.nodes],
        }

    async def save_state(self) -> None:
        await state.write_state(self.tag, self.to_state())

    async def up(self, timeout: float = 60) -> None:
        """Create network, registry and nodes (in parallel), load busybox, fill the registry."""
        check_host(self.use_registry)
        async with state.host_lock():
            await state.sweep_orphans()  # leftovers of crashed runs
            await state.teardown(self.tag)  # and of an earlier run with this very tag
            octet = self.octet if self.octet is not None else await netns.pick_octet(self.tag)
            self.net = net = netns.Net(self.tag, octet)
            await asyncio.to_thread(shutil.rmtree, self.workdir, True)
            await asyncio.to_thread(os.makedirs, self.workdir, exist_ok=True)
            await netns.create_bridge(net)
            self.nodes = [self._new_node(i) for i in range(self.n)]
            await self.save_state()  # from here on a crash leaves a state file to clean up by
        if self.use_registry:
            self.registry = Registry(net.bridge_ip, self.workdir)
            await self.registry.start()
        await asyncio.gather(*(self._boot(node, timeout) for node in self.nodes))
        await self.save_state()
        await self._load_images()
        await self.save_state()

    def _new_node(self, index: int) -> SandboxNode:
        assert self.net is not None
        node_dir = os.path.join(self.workdir, f"node-{index}")
        with listen_socket(0) as probe:  # a free port; start() rebinds it with SO_REUSEADDR
            port = probe.getsockname()[1]
        return SandboxNode(
            index=index, name=f"node-{index}", ip=self.net.node_ip(index), host_port=port,
            unix_socket=os.path.join(node_dir, "docker.sock"), labels=self.labels[index],
            netns=self.net.netns(index), dir=node_dir, bridge_ip=self.net.bridge_ip,
            mirror=self.use_registry,
        )

    async def _boot(self, node: SandboxNode, timeout: float) -> None:
        assert self.net is not None
        await netns.create_node_net(self.net, node.index)
        await node.start(wait=False)
        await self.save_state()
        await node.wait_ready(timeout)

    async def _load_images(self) -> None:
        first = self.nodes[0]
        had_cache = await asyncio.to_thread(os.path.exists, images.cache_path())
        tarball = await images.ensure_busybox(first.docker_host)
        targets = self.nodes if had_cache else self.nodes[1:]
        await asyncio.gather(*(images.load_busybox(n.docker_host, tarball) for n in targets))
        if self.registry is not None:
            await self.registry.wait_ready()
            await self.registry.preload(first.docker_host)

    async def down(self) -> None:
        """Kill every node's pid namespace, the registry, then remove network and files."""
        if not self.persistent:
            await asyncio.gather(*(node.kill() for node in self.nodes if node.pid is not None),
                                 return_exceptions=True)
            if self.registry is not None:
                await self.registry.stop()
        await state.teardown(self.tag)
        self.nodes = []
        self.registry = None
