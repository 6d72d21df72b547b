"""The Docker API documents (info, version, list and inspect entries) a simulated engine renders.

Kept apart from the engine's state and operations so each module stays small.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal.sandbox.simulated.records import EngineSpec, SimContainer, SimImage
from shoal.sandbox.simulated.stamps import ZERO_TIME, digest, docker_time

SERVER_VERSION = "20.10.24"
API_VERSION = "1.41"
MIN_API_VERSION = "1.12"
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


class EngineDocuments:
    """Mixin of `SimEngine`: renders its records as dockerd 20.10 (API 1.41) answers them."""

    spec: EngineSpec
    clock: Callable[[], int]
    containers: dict[str, SimContainer]
    images: dict[str, SimImage]
    listeners: set[Callable[[dict[str, Any]], None]]
    bridge_id: str

    def info(self) -> dict[str, Any]:
        running = sum(1 for c in self.containers.values() if c.status == "running")
        paused = sum(1 for c in self.containers.values() if c.status == "paused")
        return {
            "ID": self.spec.daemon_id, "Containers": len(self.containers),
            "ContainersRunning": running, "ContainersPaused": paused,
            "ContainersStopped": len(self.containers) - running - paused,
            "Images": len(self.images), "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                             ["Native Overlay Diff", "true"], ["userxattr", "false"]],
            "Plugins": {"Volume": ["local"],
                        "Network": ["bridge", "host", "ipvlan", "macvlan", "null", "overlay"],
                        "Authorization": None, "Log": ["json-file", "local", "syslog"]},
            "MemoryLimit": True, "SwapLimit": True, "KernelMemory": True,
            "KernelMemoryTCP": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
            "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
            "BridgeNfIptables": True, "BridgeNfIp6tables": True, "Debug": False,
            "NFd": 32, "OomKillDisable": True, "NGoroutines": 47,
            "SystemTime": docker_time(self.clock()), "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs", "CgroupVersion": "1",
            "NEventsListener": len(self.listeners), "KernelVersion": "6.1.0-sim",
            "OperatingSystem": "Debian GNU/Linux 12 (bookworm) (simulated)", "OSVersion": "12",
            "OSType": "linux", "Architecture": "x86_64",
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [],
                               "AllowNondistributableArtifactsHostnames": [],
                               "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {},
                               "Mirrors": []},
            "NCPU": self.spec.cpus, "MemTotal": self.spec.memory, "GenericResources": None,
            "DockerRootDir": "/var/lib/docker", "HttpProxy": "", "HttpsProxy": "",
            "NoProxy": "", "Name": self.spec.name, "Labels": list(self.spec.labels),
            "ExperimentalBuild": False, "ServerVersion": SERVER_VERSION,
            "Runtimes": {"runc": {"path": "runc"}}, "DefaultRuntime": "runc",
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                      "ControlAvailable": False, "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": False, "Isolation": "", "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": "sim", "Expected": "sim"},
            "RuncCommit": {"ID": "sim", "Expected": "sim"},
            "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": ["name=seccomp,profile=default"], "Warnings": [],
        }

    @staticmethod
    def version() -> dict[str, Any]:
        details = {"ApiVersion": API_VERSION, "Arch": "amd64", "MinAPIVersion": MIN_API_VERSION,
                   "Os": "linux", "GitCommit": "5d6db84", "GoVersion": "go1.19.8",
                   "KernelVersion": "6.1.0-sim", "Experimental": "false",
                   "BuildTime": "2023-04-14T10:32:03.000000000+00:00"}
        return {"Platform": {"Name": ""},
                "Components": [{"Name": "Engine", "Version": SERVER_VERSION,
                                "Details": details}],
                "Version": SERVER_VERSION, "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION, "GitCommit": "5d6db84",
                "GoVersion": "go1.19.8", "Os": "linux", "Arch": "amd64",
                "KernelVersion": "6.1.0-sim", "BuildTime": "2023-04-14T10:32:03.000000000+00:00"}

    def summary(self, c: SimContainer, now: float, size: bool = False) -> dict[str, Any]:
        """One entry of `GET /containers/json`."""
        with_ip = c.running and c.network_mode in ("default", "bridge")
        networks = ({"bridge": c.network_block(self.bridge_id, with_ip)}
                    if c.network_mode in ("default", "bridge") else {})
        entry: dict[str, Any] = {
            "Id": c.id, "Names": ["/" + c.name], "Image": c.image, "ImageID": c.image_id,
            "Command": " ".join(c.cmd), "Created": c.created // 10**9, "Ports": [],
            "Labels": dict(c.labels), "State": c.status, "Status": c.status_text(now),
            "HostConfig": {"NetworkMode": c.network_mode},
            "NetworkSettings": {"Networks": networks}, "Mounts": c.mounts(),
        }
        if size:
            entry["SizeRw"] = 4096
            entry["SizeRootFs"] = self.images[c.image_id].size + 4096 \
                if c.image_id in self.images else 4096
        return entry

    def inspect(self, c: SimContainer) -> dict[str, Any]:
        """`GET /containers/{id}/json`, the full document."""
        root = f"/var/lib/docker/containers/{c.id}"
        with_ip = c.running and c.network_mode in ("default", "bridge")
        net = c.network_block(self.bridge_id, with_ip)
        return {
            "Id": c.id, "Created": docker_time(c.created), "Path": c.cmd[0] if c.cmd else "",
            "Args": c.cmd[1:],
            "State": {"Status": c.status, "Running": c.running, "Paused": c.status == "paused",
                      "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": c.pid,
                      "ExitCode": c.exit_code, "Error": "",
                      "StartedAt": docker_time(c.started_at),
                      "FinishedAt": docker_time(c.finished_at)},
            "Image": c.image_id, "ResolvConfPath": root + "/resolv.conf",
            "HostnamePath": root + "/hostname", "HostsPath": root + "/hosts",
            "LogPath": f"{root}/{c.id}-json.log", "Name": "/" + c.name,
            "RestartCount": c.restart_count, "Driver": "overlay2", "Platform": "linux",
            "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
            "HostConfig": self._host_config(c),
            "GraphDriver": {"Data": {"MergedDir": f"/var/lib/docker/overlay2/{c.id}/merged"},
                            "Name": "overlay2"},
            "Mounts": c.mounts(),
            "Config": {"Hostname": c.id[:12], "Domainname": "", "User": "",
                       "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
                       "Tty": c.tty, "OpenStdin": False, "StdinOnce": False, "Env": list(c.env),
                       "Cmd": list(c.cmd), "Image": c.image, "Volumes": None, "WorkingDir": "",
                       "Entrypoint": None, "OnBuild": None, "Labels": dict(c.labels)},
            "NetworkSettings": {
                "Bridge": "", "SandboxID": digest("sb", c.id) if with_ip else "",
                "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                "Ports": {}, "SandboxKey": "", "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None, "EndpointID": net["EndpointID"],
                "Gateway": net["Gateway"], "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "IPAddress": net["IPAddress"], "IPPrefixLen": net["IPPrefixLen"],
                "IPv6Gateway": "", "MacAddress": net["MacAddress"],
                "Networks": ({"bridge": net} if c.network_mode in ("default", "bridge")
                             else {}),
            },
        }

    @staticmethod
    def _host_config(c: SimContainer) -> dict[str, Any]:
        """The `HostConfig` block of a container's inspect document."""
        return {
            "Binds": list(c.binds) or None, "ContainerIDFile": "",
            "LogConfig": {"Type": "json-file", "Config": {}},
            "NetworkMode": c.network_mode, "PortBindings": {},
            "RestartPolicy": {"Name": c.restart_policy, "MaximumRetryCount": 0},
            "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None,
            "CapAdd": None, "CapDrop": None, "CgroupnsMode": "host", "Dns": [],
            "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None,
            "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0,
            "PidMode": "", "Privileged": False, "PublishAllPorts": False,
            "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
            "ShmSize": 67108864, "Runtime": "runc", "ConsoleSize": [0, 0], "Isolation": "",
            "CpuShares": c.cpu_shares, "Memory": c.memory, "NanoCpus": c.nano_cpus,
            "CgroupParent": "", "BlkioWeight": 0, "CpuPeriod": 0, "CpuQuota": 0,
            "CpusetCpus": "", "CpusetMems": "", "Devices": [], "MemoryReservation": 0,
            "MemorySwap": c.memory * 2 if c.memory else 0, "MemorySwappiness": None,
            "OomKillDisable": False, "PidsLimit": None, "Ulimits": [],
            "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
            "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
            "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "DeviceCgroupRules": None,
            "DeviceRequests": None, "KernelMemory": 0, "KernelMemoryTCP": 0,
            "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
            "MaskedPaths": list(MASKED_PATHS), "ReadonlyPaths": list(READONLY_PATHS),
        }

    def image_summary(self, image: SimImage) -> dict[str, Any]:
        return {"Containers": -1, "Created": image.created // 10**9, "Id": image.id,
                "Labels": None, "ParentId": "", "RepoDigests": None, "RepoTags": image.tags,
                "SharedSize": -1, "Size": image.size, "VirtualSize": image.size}

    def image_inspect(self, image: SimImage) -> dict[str, Any]:
        return {"Id": image.id, "RepoTags": image.tags, "RepoDigests": [], "Parent": "",
                "Comment": "", "Created": docker_time(image.created), "Container": "",
                "DockerVersion": SERVER_VERSION, "Author": "",
                "Config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"],
                           "Cmd": ["sh"], "Labels": None},
                "Architecture": "amd64", "Os": "linux", "Size": image.size,
                "VirtualSize": image.size,
                "GraphDriver": {"Data": None, "Name": "overlay2"},
                "RootFS": {"Type": "layers", "Layers": ["sha256:" + digest("layer", image.id)]},
                "Metadata": {"LastTagTime": ZERO_TIME}}
