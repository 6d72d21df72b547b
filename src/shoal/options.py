"""Validated command options, with classic Swarm's defaults, order of checks and messages.

Pure functions over raw flag values and an environment mapping, so every rule is
testable without click. Each failure raises ``OptionsError`` with the message the
user should see.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shoal.discovery.base import DiscoveryError, split_host_port
from shoal.discovery.url import KV_SCHEMES, parse_discovery, split_discovery_url
from shoal.durations import parse_duration
from shoal.flag_values import (
    DEFAULTS,
    GO_INT,
    OptionsError,
    flag_duration,
    flag_int,
    go_float,
    go_int,
    lenient_duration,
    limit_count,
    limit_duration,
    parse_bool,
)
from shoal.logs import LOG_FORMATS, parse_level
from shoal.scheduler.filters import DEFAULT_FILTERS as DEFAULT_SCHEDULER_FILTERS

__all__ = [
    "DEFAULT_FILTERS",
    "DEFAULT_HOST",
    "FILTERS",
    "STRATEGIES",
    "GlobalOptions",
    "JoinOptions",
    "ListOptions",
    "ManageOptions",
    "OptionsError",
    "RawJoin",
    "RawList",
    "RawManage",
    "TLSOptions",
    "check_addr_format",
    "parse_bool",
    "parse_cluster_opts",
    "parse_discovery_opts",
    "parse_global",
    "parse_join",
    "parse_list",
    "parse_manage",
    "parse_metrics_addr",
    "select_discovery",
]

_log = logging.getLogger(__name__)

APP = "shoal"
DEFAULT_HOST = "tcp://127.0.0.1:2375"
STRATEGIES = ("spread", "binpack", "random")
FILTERS = DEFAULT_SCHEDULER_FILTERS
DEFAULT_FILTERS = FILTERS
DEFAULT_KV_PATH = "docker/swarm/nodes"


@dataclass(frozen=True)
class GlobalOptions:
    """Flags given before the command."""

    debug: bool = False
    experimental: bool = False
    log_level: str = DEFAULTS.log_level
    log_format: str = DEFAULTS.log_format


@dataclass(frozen=True)
class TLSOptions:
    """Certificate files; ``verify`` means --tlsverify (then ``ca`` is set)."""

    cert: str
    key: str
    ca: str | None
    verify: bool


@dataclass(frozen=True)
class ManageOptions:
    """Everything ``shoal manage`` needs, validated; durations are seconds."""

    hosts: list[str]
    discovery: str
    strategy: str = DEFAULTS.strategy
    filters: list[str] = field(default_factory=lambda: list(DEFAULT_FILTERS))
    tls: TLSOptions | None = None
    cors: bool = False
    heartbeat: float = parse_duration(DEFAULTS.heartbeat)
    overcommit: float = float(DEFAULTS.overcommit)
    create_retry: int = int(DEFAULTS.create_retry)
    refresh_min: float = parse_duration(DEFAULTS.refresh_min)
    refresh_max: float = parse_duration(DEFAULTS.refresh_max)
    failure_retry: int = int(DEFAULTS.failure_retry)
    engine_probe_timeout: float = parse_duration(DEFAULTS.engine_probe_timeout)
    replication: bool = False
    replication_ttl: float = parse_duration(DEFAULTS.replication_ttl)
    advertise: str | None = None
    discovery_opts: dict[str, str] = field(default_factory=dict)
    cluster_opts: dict[str, str] = field(default_factory=dict)
    refresh_on_node_filter: bool = False
    container_name_refresh_filter: str = ""
    api_head_timeout: float = parse_duration(DEFAULTS.api_head_timeout)
    api_idle_timeout: float = parse_duration(DEFAULTS.api_idle_timeout)
    api_body_timeout: float = parse_duration(DEFAULTS.api_body_timeout)
    api_body_min_rate: int = int(DEFAULTS.api_body_min_rate)
    api_max_connections: int = int(DEFAULTS.api_max_connections)
    debug: bool = False
    experimental: bool = False
    log_level: str = DEFAULTS.log_level
    #: (host, port) of the metrics and cluster-page listener; None keeps it off.
    metrics_addr: tuple[str, int] | None = None


@dataclass(frozen=True)
class JoinOptions:
    """Everything ``shoal join`` needs, validated; durations are seconds."""

    discovery: str
    advertise: str
    heartbeat: float = parse_duration(DEFAULTS.heartbeat)
    ttl: float = parse_duration(DEFAULTS.ttl)
    delay: float = parse_duration(DEFAULTS.delay)
    discovery_opts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListOptions:
    """Everything ``shoal list`` needs, validated; durations are seconds."""

    discovery: str
    timeout: float = parse_duration(DEFAULTS.timeout)
    discovery_opts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RawManage:
    """``manage`` flags as typed; ``None`` means "not given"."""

    args: Sequence[str] = ()
    hosts: Sequence[str] = ()
    strategy: str = DEFAULTS.strategy
    filters: Sequence[str] = ()
    replication: bool = False
    replication_ttl: str = DEFAULTS.replication_ttl
    advertise: str | None = None
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    refresh_min: str = DEFAULTS.refresh_min
    refresh_max: str = DEFAULTS.refresh_max
    failure_retry: str = DEFAULTS.failure_retry
    refresh_retry: str = DEFAULTS.refresh_retry
    engine_probe_timeout: str = DEFAULTS.engine_probe_timeout
    heartbeat: str = DEFAULTS.heartbeat
    cors: bool = False
    cluster_driver: str = DEFAULTS.cluster_driver
    cluster_opts: Sequence[str] = ()
    discovery_opts: Sequence[str] = ()
    refresh_on_node_filter: bool = False
    container_name_refresh_filter: str = ""
    api_head_timeout: str = DEFAULTS.api_head_timeout
    api_idle_timeout: str = DEFAULTS.api_idle_timeout
    api_body_timeout: str = DEFAULTS.api_body_timeout
    api_body_min_rate: str = DEFAULTS.api_body_min_rate
    api_max_connections: str = DEFAULTS.api_max_connections
    metrics_addr: str = ""


@dataclass(frozen=True)
class RawJoin:
    """``join`` flags as typed; ``None`` means "not given"."""

    args: Sequence[str] = ()
    advertise: str | None = None
    heartbeat: str = DEFAULTS.heartbeat
    ttl: str = DEFAULTS.ttl
    delay: str = DEFAULTS.delay
    discovery_opts: Sequence[str] = ()


@dataclass(frozen=True)
class RawList:
    """``list`` flags as typed."""

    args: Sequence[str] = ()
    timeout: str = DEFAULTS.timeout
    discovery_opts: Sequence[str] = ()


def parse_global(
    *,
    debug: bool,
    experimental: bool,
    log_level: str | None,
    env: Mapping[str, str],
    log_format: str | None = None,
) -> GlobalOptions:
    """Global flags; ``--debug`` (or DEBUG) forces debug unless ``-l`` was given."""
    if not debug:
        debug = parse_bool(env.get("DEBUG", "")) is True
    level = log_level if log_level is not None else DEFAULTS.log_level
    try:
        parse_level(level)
    except ValueError as exc:
        raise OptionsError(str(exc)) from None
    if log_level is None and debug:
        level = "debug"
    log_format = log_format if log_format is not None else DEFAULTS.log_format
    if log_format not in LOG_FORMATS:
        raise OptionsError(f'unsupported log format "{log_format}" (use text or json)')
    return GlobalOptions(
        debug=debug, experimental=experimental, log_level=level.lower(), log_format=log_format
    )


def parse_metrics_addr(text: str) -> tuple[str, int] | None:
    """``--metrics-addr``: ``host:port`` (port 0 picks a free one); empty means off."""
    if not text:
        return None
    try:
        host, port = split_host_port(text)
    except ValueError:
        raise OptionsError("--metrics-addr should be of the form host:port") from None
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise OptionsError("--metrics-addr should be of the form host:port")
    return host or "0.0.0.0", int(port)


def select_discovery(args: Sequence[str], env: Mapping[str, str], verb: str) -> str:
    """The discovery URL: the single positional argument, else SWARM_DISCOVERY."""
    url = args[0] if len(args) == 1 else env.get("SWARM_DISCOVERY", "")
    if not url:
        raise OptionsError(
            f"discovery required to {verb} a cluster. See '{APP} {verb} --help'."
        )
    return url


def _heartbeat(text: str) -> float:
    heartbeat = flag_duration(text, "--heartbeat")
    if heartbeat < 1.0:
        raise OptionsError("--heartbeat should be at least one second")
    return heartbeat


def check_addr_format(addr: str) -> bool:
    """True for ``host:port`` with a port in 1..65535 (classic Swarm's checkAddrFormat)."""
    try:
        _host, port = split_host_port(addr)
    except ValueError:
        return False
    if not GO_INT.fullmatch(port):
        return False
    return 0 < int(port) <= 65535


def parse_discovery_opts(values: Sequence[str]) -> dict[str, str]:
    """``key=value`` strings to a dict, with the default ``kv.path``; later keys win."""
    options: dict[str, str] = {}
    for value in values:
        if "=" not in value:
            raise OptionsError("--discovery-opt must contain key=value strings")
        key, _, val = value.partition("=")
        options[key] = val
    options.setdefault("kv.path", DEFAULT_KV_PATH)
    return options


def _check_discovery(url: str, heartbeat: float, ttl: float, opts: Mapping[str, str]) -> None:
    """Fail now, with the backend's message, if ``url`` cannot be used."""
    try:
        parse_discovery(url, heartbeat, ttl, opts)
    except DiscoveryError as exc:
        raise OptionsError(str(exc)) from None


def parse_cluster_opts(values: Sequence[str]) -> tuple[dict[str, str], float, int]:
    """Return (all options, overcommit, createretry); the first value of a key wins."""
    options: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if sep and key not in options:
            options[key] = val
    overcommit = float(DEFAULTS.overcommit)
    if "swarm.overcommit" in options:
        overcommit = go_float(options["swarm.overcommit"])
        if overcommit <= -1:
            raise OptionsError(
                f"swarm.overcommit should be larger than -1, {overcommit:f} is invalid"
            )
        if overcommit < 0:
            _log.warning(
                "-1 < swarm.overcommit < 0 will make swarm take less resource "
                "than docker engine offers"
            )
    create_retry = int(DEFAULTS.create_retry)
    if "swarm.createretry" in options:
        create_retry = go_int(options["swarm.createretry"])
        if create_retry < 0:
            raise OptionsError(
                f"swarm.createretry can not be negative, {create_retry} is invalid"
            )
    return options, overcommit, create_retry


def _tls(raw: RawManage) -> TLSOptions | None:
    if raw.tls or raw.tlsverify:
        if raw.tlscert is None or raw.tlskey is None:
            raise OptionsError("--tlscert and --tlskey must be provided when using --tls")
        if raw.tlsverify and raw.tlscacert is None:
            raise OptionsError("--tlscacert must be provided when using --tlsverify")
        return TLSOptions(
            cert=raw.tlscert, key=raw.tlskey, ca=raw.tlscacert, verify=raw.tlsverify
        )
    if raw.tlscert is not None or raw.tlskey is not None or raw.tlscacert is not None:
        raise OptionsError(
            "--tlscert, --tlskey and --tlscacert require the use of either --tls or --tlsverify"
        )
    return None


def _hosts(given: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """-H values, reproducing urfave/cli's slice-with-default quirk.

    The default (``SWARM_HOST``'s comma list, else tcp://127.0.0.1:2375) gets
    the -H values appended and, when -H was given, its first element dropped.
    """
    env_hosts = env.get("SWARM_HOST", "")
    default = [h.strip() for h in env_hosts.split(",")] if env_hosts else [DEFAULT_HOST]
    if not given:
        return default
    return [*default, *given][1:]


def _replication_ttl(raw: RawManage, url: str, advertise: str) -> float:
    if not advertise:
        raise OptionsError("--advertise address must be provided when using --leader-election")
    if not check_addr_format(advertise):
        raise OptionsError("--advertise should be of the form ip:port or hostname:port")
    ttl = flag_duration(raw.replication_ttl, "--replication-ttl")
    if ttl <= 0:
        raise OptionsError("--replication-ttl should be a positive number")
    scheme, _ = split_discovery_url(url)
    if scheme not in KV_SCHEMES:
        raise OptionsError(
            "Leader election is only supported with consul, etcd and zookeeper discovery."
        )
    return ttl


def _engine_refresh(raw: RawManage) -> tuple[float, float, int]:
    """The refresh interval bounds and the failure retry count, checked in classic order."""
    refresh_min = lenient_duration(raw.refresh_min)
    refresh_max = lenient_duration(raw.refresh_max)
    if refresh_min <= 0:
        raise OptionsError("min refresh interval should be a positive number")
    if refresh_max < refresh_min:
        raise OptionsError("max refresh interval cannot be less than min refresh interval")
    if flag_int(raw.refresh_retry, "--engine-refresh-retry") != int(DEFAULTS.refresh_retry):
        raise OptionsError("--engine-refresh-retry is deprecated. Use --engine-failure-retry")
    failure_retry = flag_int(raw.failure_retry, "--engine-failure-retry")
    if failure_retry <= 0:
        raise OptionsError("invalid failure retry count")
    return refresh_min, refresh_max, failure_retry


def _scheduler(raw: RawManage) -> tuple[str, list[str]]:
    strategy = "binpack" if raw.strategy == "binpacking" else raw.strategy
    if strategy not in STRATEGIES:
        raise OptionsError("strategy not supported")
    filters = list(raw.filters) if raw.filters else list(DEFAULT_FILTERS)
    if any(name not in FILTERS for name in filters):
        raise OptionsError("filter not supported")
    return strategy, filters


def parse_manage(
    raw: RawManage, env: Mapping[str, str], glob: GlobalOptions | None = None
) -> ManageOptions:
    """Validate ``manage`` flags in classic Swarm's order (TLS, refresh, discovery, ...)."""
    glob = glob or GlobalOptions()
    tls = _tls(raw)

    refresh_min, refresh_max, failure_retry = _engine_refresh(raw)
    probe_timeout = limit_duration(raw.engine_probe_timeout, "--engine-probe-timeout")

    url = select_discovery(raw.args, env, "manage")
    heartbeat = _heartbeat(raw.heartbeat)
    discovery_opts = parse_discovery_opts(raw.discovery_opts)
    _check_discovery(url, heartbeat, 0.0, discovery_opts)

    strategy, filters = _scheduler(raw)

    if raw.cluster_driver != "swarm":
        raise OptionsError(f'unsupported cluster "{raw.cluster_driver}"')
    cluster_opts, overcommit, create_retry = parse_cluster_opts(raw.cluster_opts)

    hosts = _hosts(raw.hosts, env)
    metrics_addr = parse_metrics_addr(raw.metrics_addr)
    advertise = raw.advertise if raw.advertise is not None else env.get("SWARM_ADVERTISE", "")
    replication_ttl = parse_duration(DEFAULTS.replication_ttl)
    if raw.replication:
        replication_ttl = _replication_ttl(raw, url, advertise)

    return ManageOptions(
        hosts=hosts,
        discovery=url,
        strategy=strategy,
        filters=filters,
        tls=tls,
        cors=raw.cors,
        heartbeat=heartbeat,
        overcommit=overcommit,
        create_retry=create_retry,
        refresh_min=refresh_min,
        refresh_max=refresh_max,
        failure_retry=failure_retry,
        engine_probe_timeout=probe_timeout,
        replication=raw.replication,
        replication_ttl=replication_ttl,
        advertise=advertise or None,
        discovery_opts=discovery_opts,
        cluster_opts=cluster_opts,
        refresh_on_node_filter=raw.refresh_on_node_filter,
        container_name_refresh_filter=raw.container_name_refresh_filter,
        api_head_timeout=limit_duration(raw.api_head_timeout, "--api-head-timeout"),
        api_idle_timeout=limit_duration(raw.api_idle_timeout, "--api-idle-timeout"),
        api_body_timeout=limit_duration(raw.api_body_timeout, "--api-body-timeout"),
        api_body_min_rate=limit_count(raw.api_body_min_rate, "--api-body-min-rate", 1),
        api_max_connections=limit_count(raw.api_max_connections, "--api-max-connections", 0),
        debug=glob.debug,
        experimental=glob.experimental,
        log_level=glob.log_level,
        metrics_addr=metrics_addr,
    )


def parse_join(raw: RawJoin, env: Mapping[str, str]) -> JoinOptions:
    """Validate ``join`` flags in classic Swarm's order."""
    url = select_discovery(raw.args, env, "join")
    advertise = raw.advertise if raw.advertise is not None else env.get("SWARM_ADVERTISE", "")
    if not advertise:
        raise OptionsError("missing mandatory --advertise flag")
    if not check_addr_format(advertise):
        raise OptionsError("--advertise should be of the form ip:port or hostname:port")
    delay = flag_duration(raw.delay, "--delay")
    if delay < 0:
        raise OptionsError("--delay should not be a negative number")
    heartbeat = _heartbeat(raw.heartbeat)
    ttl = flag_duration(raw.ttl, "--ttl")
    if ttl <= heartbeat:
        raise OptionsError("--ttl must be strictly superior to the heartbeat value")
    discovery_opts = parse_discovery_opts(raw.discovery_opts)
    _check_discovery(url, heartbeat, ttl, discovery_opts)
    scheme, _ = split_discovery_url(url)
    if scheme in ("nodes", "file"):
        raise OptionsError(
            f'join is not supported with "{scheme}" discovery: '
            "not implemented in this discovery service"
        )
    return JoinOptions(
        discovery=url,
        advertise=advertise,
        heartbeat=heartbeat,
        ttl=ttl,
        delay=delay,
        discovery_opts=discovery_opts,
    )


def parse_list(raw: RawList, env: Mapping[str, str]) -> ListOptions:
    """Validate ``list`` flags in classic Swarm's order."""
    url = select_discovery(raw.args, env, "list")
    timeout = flag_duration(raw.timeout, "--timeout")
    if timeout <= 0:
        raise OptionsError("--timeout should be a positive number")
    discovery_opts = parse_discovery_opts(raw.discovery_opts)
    _check_discovery(url, timeout, 0.0, discovery_opts)
    return ListOptions(discovery=url, timeout=timeout, discovery_opts=discovery_opts)
