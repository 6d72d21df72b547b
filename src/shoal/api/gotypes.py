"""dockerd's body structs as data (the fields shoal reads), kept apart from the decoder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class GoType:
    """A Go type as the decoder sees it; `name` is how its error messages print it."""

    name: str
    kind: str  # string int uint float bool slice array map struct strslice any
    bits: int = 64
    elem: GoType | None = None
    fields: Mapping[str, GoType] = field(default_factory=dict)
    pointer: bool = False
    """A pointer (`*string`): null stays null instead of reading as the zero value."""

    @property
    def short(self) -> str:
        """A struct's name without its package, as in `Go struct field HostConfig.X`."""
        return self.name.rpartition(".")[2]


STRING = GoType("string", "string")
BOOL = GoType("bool", "bool")
INT = GoType("int", "int")
INT64 = GoType("int64", "int")
UINT = GoType("uint", "uint")
UINT16 = GoType("uint16", "uint", 16)
UINT64 = GoType("uint64", "uint")
DURATION = GoType("time.Duration", "int")
FILE_MODE = GoType("fs.FileMode", "uint", 32)
ANY = GoType("interface {}", "any")
EMPTY = GoType("struct {}", "struct")
STRSLICE = GoType("strslice.StrSlice", "strslice")


def slice_of(elem: GoType, name: str | None = None) -> GoType:
    return GoType(name or f"[]{elem.name}", "slice", elem=elem)


def map_of(elem: GoType, name: str | None = None) -> GoType:
    return GoType(name or f"map[string]{elem.name}", "map", elem=elem)


def struct(name: str, **fields: GoType) -> GoType:
    return GoType(name, "struct", fields=fields)


def named(name: str, base: GoType) -> GoType:
    """A defined type over a basic one (`type NetworkMode string`)."""
    return GoType(name, base.kind, base.bits)


STRINGS = slice_of(STRING)
STRING_MAP = map_of(STRING)

RESTART_POLICY = struct("container.RestartPolicy", Name=STRING, MaximumRetryCount=INT)
WEIGHT_DEVICE = struct("blkiodev.WeightDevice", Path=STRING, Weight=UINT16)
THROTTLE_DEVICE = struct("blkiodev.ThrottleDevice", Path=STRING, Rate=UINT64)
RESOURCES: dict[str, GoType] = {
    "CpuShares": INT64,
    "Memory": INT64,
    "NanoCpus": INT64,
    "CgroupParent": STRING,
    "BlkioWeight": UINT16,
    "BlkioWeightDevice": slice_of(WEIGHT_DEVICE, "[]*blkiodev.WeightDevice"),
    "BlkioDeviceReadBps": slice_of(THROTTLE_DEVICE, "[]*blkiodev.ThrottleDevice"),
    "BlkioDeviceWriteBps": slice_of(THROTTLE_DEVICE, "[]*blkiodev.ThrottleDevice"),
    "BlkioDeviceReadIOps": slice_of(THROTTLE_DEVICE, "[]*blkiodev.ThrottleDevice"),
    "BlkioDeviceWriteIOps": slice_of(THROTTLE_DEVICE, "[]*blkiodev.ThrottleDevice"),
    "CpuPeriod": INT64,
    "CpuQuota": INT64,
    "CpuRealtimePeriod": INT64,
    "CpuRealtimeRuntime": INT64,
    "CpusetCpus": STRING,
    "CpusetMems": STRING,
    "Devices": slice_of(
        struct(
            "container.DeviceMapping",
            PathOnHost=STRING,
            PathInContainer=STRING,
            CgroupPermissions=STRING,
        )
    ),
    "DeviceCgroupRules": STRINGS,
    "DeviceRequests": slice_of(
        struct(
            "container.DeviceRequest",
            Driver=STRING,
            Count=INT,
            DeviceIDs=STRINGS,
            Capabilities=slice_of(STRINGS),
            Options=STRING_MAP,
        )
    ),
    "KernelMemory": INT64,
    "KernelMemoryTCP": INT64,
    "MemoryReservation": INT64,
    "MemorySwap": INT64,
    "MemorySwappiness": INT64,
    "OomKillDisable": BOOL,
    "PidsLimit": INT64,
    "Ulimits": slice_of(
        struct("units.Ulimit", Name=STRING, Hard=INT64, Soft=INT64), "[]*units.Ulimit"
    ),
    "CpuCount": INT64,
    "CpuPercent": INT64,
    "IOMaximumIOps": UINT64,
    "IOMaximumBandwidth": UINT64,
}
MOUNT = struct(
    "mount.Mount",
    Type=named("mount.Type", STRING),
    Source=STRING,
    Target=STRING,
    ReadOnly=BOOL,
    Consistency=named("mount.Consistency", STRING),
    BindOptions=struct(
        "mount.BindOptions", Propagation=named("mount.Propagation", STRING), NonRecursive=BOOL
    ),
    VolumeOptions=struct(
        "mount.VolumeOptions",
        NoCopy=BOOL,
        Labels=STRING_MAP,
        DriverConfig=struct("mount.Driver", Name=STRING, Options=STRING_MAP),
    ),
    TmpfsOptions=struct("mount.TmpfsOptions", SizeBytes=INT64, Mode=FILE_MODE),
)
HOST_CONFIG = struct(
    "container.HostConfig",
    Binds=STRINGS,
    ContainerIDFile=STRING,
    LogConfig=struct("container.LogConfig", Type=STRING, Config=STRING_MAP),
    NetworkMode=named("container.NetworkMode", STRING),
    PortBindings=map_of(
        slice_of(struct("nat.PortBinding", HostIp=STRING, HostPort=STRING)), "nat.PortMap"
    ),
    RestartPolicy=RESTART_POLICY,
    AutoRemove=BOOL,
    VolumeDriver=STRING,
    VolumesFrom=STRINGS,
    CapAdd=STRSLICE,
    CapDrop=STRSLICE,
    CgroupnsMode=named("container.CgroupnsMode", STRING),
    Dns=STRINGS,
    DnsOptions=STRINGS,
    DnsSearch=STRINGS,
    ExtraHosts=STRINGS,
    GroupAdd=STRINGS,
    IpcMode=named("container.IpcMode", STRING),
    Cgroup=named("container.CgroupSpec", STRING),
    Links=STRINGS,
    OomScoreAdj=INT,
    PidMode=named("container.PidMode", STRING),
    Privileged=BOOL,
    PublishAllPorts=BOOL,
    ReadonlyRootfs=BOOL,
    SecurityOpt=STRINGS,
    StorageOpt=STRING_MAP,
    Tmpfs=STRING_MAP,
    UTSMode=named("container.UTSMode", STRING),
    UsernsMode=named("container.UsernsMode", STRING),
    ShmSize=INT64,
    Sysctls=STRING_MAP,
    Runtime=STRING,
    ConsoleSize=GoType("[2]uint", "array", elem=UINT),
    Isolation=named("container.Isolation", STRING),
    Mounts=slice_of(MOUNT),
    MaskedPaths=STRINGS,
    ReadonlyPaths=STRINGS,
    Init=BOOL,
    **RESOURCES,
)
ENDPOINT_SETTINGS = struct(
    "network.EndpointSettings",
    IPAMConfig=struct(
        "network.EndpointIPAMConfig",
        IPv4Address=STRING,
        IPv6Address=STRING,
        LinkLocalIPs=STRINGS,
    ),
    Links=STRINGS,
    Aliases=STRINGS,
    NetworkID=STRING,
    EndpointID=STRING,
    Gateway=STRING,
    IPAddress=STRING,
    IPPrefixLen=INT,
    IPv6Gateway=STRING,
    GlobalIPv6Address=STRING,
    GlobalIPv6PrefixLen=INT,
    MacAddress=STRING,
    DriverOpts=STRING_MAP,
)
CONTAINER_CONFIG = struct(
    "runconfig.ContainerConfigWrapper",
    Hostname=STRING,
    Domainname=STRING,
    User=STRING,
    AttachStdin=BOOL,
    AttachStdout=BOOL,
    AttachStderr=BOOL,
    ExposedPorts=map_of(EMPTY, "nat.PortSet"),
    Tty=BOOL,
    OpenStdin=BOOL,
    StdinOnce=BOOL,
    Env=STRINGS,
    Cmd=STRSLICE,
    Healthcheck=struct(
        "container.HealthConfig",
        Test=STRINGS,
        Interval=DURATION,
        Timeout=DURATION,
        StartPeriod=DURATION,
        Retries=INT,
    ),
    ArgsEscaped=BOOL,
    Image=STRING,
    Volumes=map_of(EMPTY),
    WorkingDir=STRING,
    Entrypoint=STRSLICE,
    NetworkDisabled=BOOL,
    MacAddress=STRING,
    OnBuild=STRINGS,
    Labels=STRING_MAP,
    StopSignal=STRING,
    StopTimeout=INT,
    Shell=STRSLICE,
    HostConfig=HOST_CONFIG,
    NetworkingConfig=struct(
        "network.NetworkingConfig",
        EndpointsConfig=map_of(ENDPOINT_SETTINGS, "map[string]*network.EndpointSettings"),
    ),
    # Classic Swarm's API: resource limits at the top level (shoal moves them into HostConfig).
    Memory=INT64,
    MemorySwap=INT64,
    CpuShares=INT64,
    Cpuset=STRING,
)
CONTAINER_UPDATE = struct("container.UpdateConfig", RestartPolicy=RESTART_POLICY, **RESOURCES)
EXEC_CONFIG = struct(
    "types.ExecConfig",
    User=STRING,
    Privileged=BOOL,
    Tty=BOOL,
    AttachStdin=BOOL,
    AttachStderr=BOOL,
    AttachStdout=BOOL,
    Detach=BOOL,
    DetachKeys=STRING,
    Env=STRINGS,
    WorkingDir=STRING,
    Cmd=STRINGS,
)
NETWORK_CREATE = struct(
    "types.NetworkCreateRequest",
    Name=STRING,
    CheckDuplicate=BOOL,
    Driver=STRING,
    Scope=STRING,
    EnableIPv6=BOOL,
    IPAM=struct(
        "network.IPAM",
        Driver=STRING,
        Options=STRING_MAP,
        Config=slice_of(
            struct(
                "network.IPAMConfig",
                Subnet=STRING,
                IPRange=STRING,
                Gateway=STRING,
                AuxiliaryAddresses=STRING_MAP,
            )
        ),
    ),
    Internal=BOOL,
    Attachable=BOOL,
    Ingress=BOOL,
    ConfigOnly=BOOL,
    ConfigFrom=struct("network.ConfigReference", Network=STRING),
    Options=STRING_MAP,
    Labels=STRING_MAP,
)
VOLUME_CREATE = struct(
    "volume.VolumeCreateBody",
    Driver=STRING,
    DriverOpts=STRING_MAP,
    Labels=STRING_MAP,
    Name=STRING,
)
