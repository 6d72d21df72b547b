"""The state of one simulated Docker engine and the operations that change it.

Containers are compact records; their inspect and list documents are built from the
record and a shared template on each request, so 150,000 containers stay cheap to hold.
Shapes follow what dockerd 20.10 (API 1.41) answers.
"""

from __future__ import annotations

import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from shoal.sandbox.simulated.documents import EngineDocuments
from shoal.sandbox.simulated.records import (
    EngineSpec,
    SimContainer,
    SimImage,
    SimNetwork,
    SimVolume,
)
from shoal.sandbox.simulated.stamps import digest

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
EVENT_HISTORY = 1024
#: Images every simulated engine starts with: (reference, size in bytes).
BASE_IMAGES = (("busybox:latest", 1_984_348), ("nginx:1.25", 187_000_000),
               ("redis:7", 138_000_000))
#: Apps the generated containers belong to, for realistic labels and commands.
APPS = (("web", "nginx:1.25", ["nginx", "-g", "daemon off;"]),
        ("cache", "redis:7", ["redis-server"]),
        ("job", "busybox:latest", ["sleep", "3600"]))


class SimError(Exception):
    """An error answered like dockerd: an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_time_nano(value: str) -> int:
    """`since`/`until` as dockerd takes them: `SECONDS[.NANOS]` or an RFC 3339 time."""
    value = value.strip()
    if not value:
        return 0
    if re.fullmatch(r"\d+(\.\d{1,9})?", value):
        seconds, _, frac = value.partition(".")
        return int(seconds) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SimError(400, f"failed to parse value {value} as a time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1_000_000_000)


class SimEngine(EngineDocuments):
    """One simulated dockerd: its objects, its event log and its live `/events` listeners."""

    def __init__(self, spec: EngineSpec, containers: int, seed: int = 0,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.spec = spec
        self.clock = clock
        self.seed = seed
        self.boot = clock()
        self.containers: dict[str, SimContainer] = {}
        self.by_name: dict[str, str] = {}
        self.images: dict[str, SimImage] = {}
        self.networks: dict[str, SimNetwork] = {}
        self.volumes: dict[str, SimVolume] = {}
        self.events: deque[tuple[int, dict[str, Any]]] = deque(maxlen=EVENT_HISTORY)
        self.listeners: set[Callable[[dict[str, Any]], None]] = set()
        #: `POST /wait` callers per container: (condition, called with the exit code).
        self.waiters: dict[str, list[tuple[str, Callable[[int], None]]]] = {}
        self._serial = 0
        self._pid = 1000
        for ref, size in BASE_IMAGES:
            self._add_image(ref, size, self.boot - 86_400 * 10**9)
        for name, driver, subnet in (("none", "null", ""), ("host", "host", ""),
                                     ("bridge", "bridge", "172.17.0.0/16")):
            net = SimNetwork(digest("net", spec.daemon_id, name), name, driver, self.boot,
                             subnet)
            self.networks[net.id] = net
        self.bridge_id = next(n.id for n in self.networks.values() if n.name == "bridge")
        self._populate(containers)

    # -- generation --------------------------------------------------------------
    def _populate(self, count: int) -> None:
        rng = random.Random(f"{self.seed}/{self.spec.index}/containers")
        now = self.clock()
        # Generated containers of one app share their label, env and command objects
        # (never mutated in place), which keeps 150,000 of them small.
        shared = {
            app: ({"com.example.app": app,
                   "com.example.tier": "frontend" if app == "web" else "backend"},
                  [f"APP={app}", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"],
                  cmd, self._image_for(image).id)
            for app, image, cmd in APPS
        }
        for i in range(count):
            app, image, _ = APPS[i % len(APPS)]
            labels, env, cmd, image_id = shared[app]
            name = f"{app}-{self.spec.index}-{i}"
            created = now - rng.randint(3600, 30 * 86_400) * 10**9
            binds = [f"{name}-data:/data"] if app == "cache" else []
            for bind in binds:
                volume = bind.split(":", 1)[0]
                self.volumes[volume] = SimVolume(volume, created)
            c = SimContainer(
                id=digest("c", self.spec.daemon_id, i), name=name, image=image,
                image_id=image_id, cmd=cmd, created=created, labels=labels, env=env,
                memory=rng.choice((0, 64, 128, 256)) * 1024**2,
                cpu_shares=rng.choice((0, 0, 256, 512)), binds=binds,
                restart_policy="always" if app != "job" else "no",
            )
            if rng.random() < 0.7:
                c.status, c.started_at = "running", created + 10**9
                c.pid = self._next_pid()
                c.ip_index = self._next_ip()
            else:
                c.status, c.started_at = "exited", created + 10**9
                c.finished_at = created + rng.randint(60, 3600) * 10**9
                c.exit_code = rng.choice((0, 0, 1, 137))
            self.containers[c.id] = c
            self.by_name[c.name] = c.id

    def _next_pid(self) -> int:
        self._pid += 1
        return self._pid

    def _next_ip(self) -> int:
        self._serial += 1
        return self._serial

    def _add_image(self, ref: str, size: int, created: int) -> SimImage:
        image = SimImage("sha256:" + digest("img", ref), [ref], size, created)
        self.images[image.id] = image
        return image

    # -- lookups -----------------------------------------------------------------
    def _image_for(self, ref: str) -> SimImage:
        found = self.find_image(ref)
        if found is None:
            raise SimError(404, f"No such image: {normalize_ref(ref)}")
        return found

    def find_image(self, ref: str) -> SimImage | None:
        want = normalize_ref(ref)
        for image in self.images.values():
            if want in image.tags or image.id == ref or image.id == "sha256:" + ref or (
                len(ref) >= 4 and image.id.removeprefix("sha256:").startswith(ref)
            ):
                return image
        return None

    def find(self, ref: str) -> SimContainer:
        """By full ID, name or unique ID prefix, as dockerd resolves a container reference."""
        ref = ref.lstrip("/")
        c = self.containers.get(ref)
        if c is not None:
            return c
        cid = self.by_name.get(ref)
        if cid is not None:
            return self.containers[cid]
        if ref:
            hits = [c for cid, c in self.containers.items() if cid.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise SimError(400, f"multiple IDs found with provided prefix: {ref}")
        raise SimError(404, f"No such container: {ref}")

    # -- events ------------------------------------------------------------------
    def emit(self, kind: str, action: str, actor_id: str, attributes: dict[str, str],
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record an event and hand it to every live `/events` listener."""
        nano = self.clock()
        if self.events and nano <= self.events[-1][0]:
            nano = self.events[-1][0] + 1  # dockerd's timeNano never repeats on one daemon
        event: dict[str, Any] = {}
        if extra:
            event.update(extra)
        event.update({"Type": kind, "Action": action,
                      "Actor": {"ID": actor_id, "Attributes": attributes},
                      "scope": "local", "time": nano // 10**9, "timeNano": nano})
        self.events.append((nano, event))
        for listener in list(self.listeners):
            listener(event)
        return event

    def container_event(self, c: SimContainer, action: str, **more: str) -> None:
        attributes = {**c.labels, "image": c.image, "name": c.name, **more}
        self.emit("container", action, c.id, attributes,
                  {"status": action, "id": c.id, "from": c.image})

    def history(self, since: int, until: int) -> list[dict[str, Any]]:
        """Buffered events with since <= timeNano (<= until when given), oldest first."""
        return [ev for nano, ev in self.events
                if nano >= since and (not until or nano <= until)]

    # -- container operations ----------------------------------------------------
    def list_containers(self) -> Iterable[SimContainer]:
        return self.containers.values()

    def create(self, name: str | None, body: dict[str, Any]) -> SimContainer:
        if name is not None and name != "":
            if not NAME_RE.match(name):
                raise SimError(400, f'Invalid container name ({name}), only '
                                    '[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
            name = name.lstrip("/")
            if name in self.by_name:
                raise SimError(409, f'Conflict. The container name "/{name}" is already in use '
                                    f'by container "{self.by_name[name]}". You have to remove '
                                    "(or rename) that container to be able to reuse that name.")
        ref = body.get("Image")
        if not isinstance(ref, str) or not ref:
            raise SimError(400, "No command specified" if ref is None else "invalid image")
        image = self._image_for(ref)
        host = body.get("HostConfig") or {}
        if not isinstance(host, dict):
            raise SimError(400, "invalid HostConfig")
        labels = body.get("Labels") or {}
        cmd = body.get("Cmd") or ["sh"]
        if isinstance(cmd, str):
            cmd = [cmd]
        cid = digest("c", self.spec.daemon_id, "new", self.clock(), len(self.containers))
        if not name:
            name = generated_name(cid)
        restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
        c = SimContainer(
            id=cid, name=name, image=ref, image_id=image.id, cmd=[str(x) for x in cmd],
            created=self.clock(), labels={str(k): str(v) for k, v in labels.items()},
            env=[str(e) for e in body.get("Env") or []], memory=int(host.get("Memory") or 0),
            cpu_shares=int(host.get("CpuShares") or 0), nano_cpus=int(host.get("NanoCpus") or 0),
            network_mode=str(host.get("NetworkMode") or "default"),
            binds=[str(b) for b in host.get("Binds") or []], restart_policy=str(restart),
            tty=bool(body.get("Tty")),
        )
        for bind in c.binds:
            volume = bind.split(":", 1)[0]
            if volume and not volume.startswith("/") and volume not in self.volumes:
                self.volumes[volume] = SimVolume(volume, self.clock())
                self.emit("volume", "create", volume, {"driver": "local"})
        self.containers[cid] = c
        self.by_name[name] = cid
        self.container_event(c, "create")
        return c

    def start(self, ref: str) -> bool:
        c = self.find(ref)
        if c.status == "paused":
            raise SimError(409, "cannot start a paused container, try unpause instead")
        if c.running:
            return False
        c.status, c.pid, c.exit_code = "running", self._next_pid(), 0
        c.started_at, c.finished_at = self.clock(), 0
        if not c.ip_index:
            c.ip_index = self._next_ip()
        if c.network_mode in ("default", "bridge"):
            self.emit("network", "connect", self.bridge_id,
                      {"container": c.id, "name": "bridge", "type": "bridge"})
        self.container_event(c, "start")
        return True

    def _exit(self, c: SimContainer, code: int) -> None:
        c.status, c.pid, c.exit_code, c.finished_at = "exited", 0, code, self.clock()
        self.container_event(c, "die", exitCode=str(code))
        if c.network_mode in ("default", "bridge"):
            self.emit("network", "disconnect", self.bridge_id,
                      {"container": c.id, "name": "bridge", "type": "bridge"})
        self._wake(c.id, ("not-running", "next-exit"), code)

    def _wake(self, cid: str, conditions: tuple[str, ...], code: int) -> None:
        waiting = self.waiters.get(cid, [])
        for _, wake in [w for w in waiting if w[0] in conditions]:
            wake(code)
        rest = [w for w in waiting if w[0] not in conditions]
        if rest:
            self.waiters[cid] = rest
        else:
            self.waiters.pop(cid, None)

    def stop(self, ref: str) -> bool:
        c = self.find(ref)
        if not c.running:
            return False
        self.container_event(c, "kill", signal="15")
        self._exit(c, 0)
        self.container_event(c, "stop")
        return True

    def kill(self, ref: str, signal: str = "KILL") -> None:
        c = self.find(ref)
        if not c.running:
            raise SimError(409, f"Cannot kill container: {ref}: Container {c.id} is not running")
        self.container_event(c, "kill", signal="9" if signal in ("KILL", "SIGKILL") else signal)
        if signal in ("KILL", "SIGKILL", "9", "TERM", "SIGTERM", "15", "INT", "SIGINT", "2"):
            self._exit(c, 137 if signal in ("KILL", "SIGKILL", "9") else 143)

    def restart(self, ref: str) -> None:
        c = self.find(ref)
        if c.running:
            self.container_event(c, "kill", signal="15")
            self._exit(c, 0)
            self.container_event(c, "stop")
        self.start(c.id)
        self.container_event(c, "restart")

    def pause(self, ref: str) -> None:
        c = self.find(ref)
        if c.status != "running":
            raise SimError(409, f"Container {c.id} is not running" if not c.running
                           else f"Container {c.id} is already paused")
        c.status = "paused"
        self.container_event(c, "pause")

    def unpause(self, ref: str) -> None:
        c = self.find(ref)
        if c.status != "paused":
            raise SimError(409, f"Container {c.id} is not paused")
        c.status = "running"
        self.container_event(c, "unpause")

    def rename(self, ref: str, new: str) -> None:
        c = self.find(ref)
        new = new.lstrip("/")
        if not new or not NAME_RE.match(new):
            raise SimError(400, f"Invalid container name ({new}), only "
                                "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if new in self.by_name and self.by_name[new] != c.id:
            raise SimError(409, f'Conflict. The container name "/{new}" is already in use by '
                                f'container "{self.by_name[new]}". You have to remove (or '
                                "rename) that container to be able to reuse that name.")
        old = c.name
        del self.by_name[old]
        c.name = new
        self.by_name[new] = c.id
        self.container_event(c, "rename", oldName="/" + old)

    def remove(self, ref: str, force: bool, volumes: bool) -> None:
        """`volumes` drops anonymous volumes on dockerd; simulated containers have none."""
        c = self.find(ref)
        if c.running:
            if not force:
                raise SimError(409, f"You cannot remove a running container {c.id}. Stop the "
                                    "container before attempting removal or force remove")
            self.container_event(c, "kill", signal="9")
            self._exit(c, 137)
        del self.containers[c.id]
        del self.by_name[c.name]
        self.container_event(c, "destroy")
        self._wake(c.id, ("removed",), c.exit_code)

    # -- images, networks, volumes --------------------------------------------------
    def pull(self, repo: str, tag: str) -> list[dict[str, Any]]:
        """Progress messages of a pull that always succeeds (no registry is involved)."""
        tag = tag or "latest"
        ref = f"{repo}@{tag}" if tag.startswith("sha256:") else f"{repo}:{tag}"
        layer = digest("layer", ref)[:12]
        source = normalize_ref(repo).rsplit(":", 1)[0]
        messages: list[dict[str, Any]] = [
                    {"status": f"Pulling from {source}", "id": tag},
                    {"status": "Pulling fs layer", "progressDetail": {}, "id": layer},
                    {"status": "Download complete", "progressDetail": {}, "id": layer},
                    {"status": "Pull complete", "progressDetail": {}, "id": layer}]
        image = self.find_image(ref)
        if image is None:
            image = self._add_image(normalize_ref(ref), 5_000_000, self.clock())
            status = f"Status: Downloaded newer image for {ref}"
        else:
            status = f"Status: Image is up to date for {ref}"
        messages.append({"status": "Digest: sha256:" + digest("digest", ref)})
        messages.append({"status": status})
        self.emit("image", "pull", ref, {"name": repo})
        return messages

    def create_network(self, body: dict[str, Any]) -> SimNetwork:
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise SimError(400, "network name is required")
        if any(n.name == name for n in self.networks.values()):
            raise SimError(409, f"network with name {name} already exists")
        subnet = f"172.{18 + len(self.networks) % 200}.0.0/16"
        net = SimNetwork(digest("net", self.spec.daemon_id, name, self.clock()), name,
                         str(body.get("Driver") or "bridge"), self.clock(), subnet,
                         {str(k): str(v) for k, v in (body.get("Labels") or {}).items()})
        self.networks[net.id] = net
        self.emit("network", "create", net.id, {"name": name, "type": net.driver})
        return net

    def find_network(self, ref: str) -> SimNetwork:
        for net in self.networks.values():
            if ref in (net.id, net.name):
                return net
        hits = [n for n in self.networks.values() if n.id.startswith(ref)] if ref else []
        if len(hits) == 1:
            return hits[0]
        raise SimError(404, f"network {ref} not found")

    def remove_network(self, ref: str) -> None:
        net = self.find_network(ref)
        if net.name in ("bridge", "host", "none"):
            raise SimError(403, f"{net.name} is a pre-defined network and cannot be removed")
        del self.networks[net.id]
        self.emit("network", "destroy", net.id, {"name": net.name, "type": net.driver})

    def create_volume(self, body: dict[str, Any]) -> SimVolume:
        name = body.get("Name") or digest("vol", self.clock())
        if name not in self.volumes:
            labels = body.get("Labels") or None
            self.volumes[name] = SimVolume(str(name), self.clock(), labels)
            self.emit("volume", "create", name, {"driver": "local"})
        return self.volumes[name]

    def remove_volume(self, name: str, force: bool) -> None:
        if name not in self.volumes:
            if force:
                return
            raise SimError(404, f"get {name}: no such volume")
        users = [c.id for c in self.containers.values()
                 if any(b.split(":", 1)[0] == name for b in c.binds)]
        if users:
            raise SimError(409, f"remove {name}: volume is in use - [{', '.join(users)}]")
        del self.volumes[name]
        self.emit("volume", "destroy", name, {"driver": "local"})


def normalize_ref(ref: str) -> str:
    """`docker.io/library/busybox` is `busybox:latest`; a digest reference keeps its digest."""
    for prefix in ("docker.io/", "index.docker.io/", "library/"):
        ref = ref.removeprefix(prefix)
    if "@" in ref:
        return ref
    slash, colon = ref.rfind("/"), ref.rfind(":")
    return ref if colon > slash else ref + ":latest"


ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid")
SURNAMES = ("turing", "hopper", "lovelace", "knuth", "ritchie", "thompson", "torvalds")


def generated_name(cid: str) -> str:
    """A dockerd-style `adjective_surname` name, derived from the ID so it is unique enough."""
    n = int(cid[:8], 16)
    return f"{ADJECTIVES[n % len(ADJECTIVES)]}_{SURNAMES[n // 16 % len(SURNAMES)]}{cid[8:12]}"
