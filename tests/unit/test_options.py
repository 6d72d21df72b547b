"""Option validation: classic Swarm's defaults, order of checks and exact messages."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from shoal.durations import DurationError, format_duration, parse_duration
from shoal.options import (
    DEFAULT_FILTERS,
    GlobalOptions,
    JoinOptions,
    ListOptions,
    ManageOptions,
    OptionsError,
    RawJoin,
    RawList,
    RawManage,
    TLSOptions,
    check_addr_format,
    parse_cluster_opts,
    parse_discovery_opts,
    parse_global,
    parse_join,
    parse_list,
    parse_manage,
)

M = RawManage(args=("nodes://a:1,b:2",))


def manage_error(raw: RawManage, env: dict[str, str] | None = None) -> str:
    with pytest.raises(OptionsError) as info:
        parse_manage(raw, env or {})
    return info.value.message


# --- durations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("0", 0.0),
        ("-1.5s", -1.5),
        (".5s", 0.5),
        ("1h2m3s4ms", 3723.004),
        ("10us", 1e-05),
        ("10\u00b5s", 1e-05),
        ("3ns", 3e-09),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("abc", 'time: invalid duration "abc"'),
        ("1", 'time: missing unit in duration "1"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("-", 'time: invalid duration "-"'),
        ("1s.", 'time: invalid duration "1s."'),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (60, "1m0s"), (1.5, "1.5s"), (0.5, "500ms"), (3600, "1h0m0s"), (90, "1m30s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- globals ------------------------------------------------------------------


def test_global_defaults_and_debug_forces_level() -> None:
    assert parse_global(debug=False, experimental=False, log_level=None, env={}) == (
        GlobalOptions(debug=False, experimental=False, log_level="info")
    )
    assert parse_global(debug=True, experimental=True, log_level=None, env={}).log_level == "debug"
    # An explicit -l wins over --debug.
    assert parse_global(debug=True, experimental=False, log_level="error", env={}).log_level == (
        "error"
    )


def test_global_debug_env_is_lenient() -> None:
    assert parse_global(debug=False, experimental=False, log_level=None, env={"DEBUG": "1"}).debug
    assert not parse_global(
        debug=False, experimental=False, log_level=None, env={"DEBUG": "maybe"}
    ).debug


def test_global_bad_log_level() -> None:
    with pytest.raises(OptionsError, match='not a valid log level: "loud"'):
        parse_global(debug=False, experimental=False, log_level="loud", env={})


# --- manage -------------------------------------------------------------------


def test_manage_defaults() -> None:
    opts = parse_manage(M, {})
    assert opts.hosts == ["tcp://127.0.0.1:2375"]
    assert opts.discovery == "nodes://a:1,b:2"
    assert opts.strategy == "spread"
    assert opts.filters == list(DEFAULT_FILTERS)
    assert opts.filters == [
        "health", "port", "containerslots", "dependency", "affinity", "constraint", "whitelist",
    ]
    assert opts.tls is None
    assert (opts.heartbeat, opts.refresh_min, opts.refresh_max) == (60.0, 30.0, 60.0)
    assert (opts.failure_retry, opts.overcommit, opts.create_retry) == (3, 0.05, 0)
    assert (opts.replication, opts.replication_ttl, opts.advertise) == (False, 20.0, None)
    assert opts.discovery_opts == {"kv.path": "docker/swarm/nodes"}
    assert opts.cluster_opts == {}
    assert not opts.cors and not opts.refresh_on_node_filter
    assert opts.container_name_refresh_filter == ""


def test_validated_defaults_are_the_parsed_flag_defaults() -> None:
    """The validated options' defaults are the raw defaults, parsed (one table for both)."""
    opts = parse_manage(M, {})
    assert opts == ManageOptions(
        hosts=opts.hosts, discovery=opts.discovery, discovery_opts=opts.discovery_opts
    )
    assert (opts.api_head_timeout, opts.api_idle_timeout, opts.api_body_timeout) == (
        30.0, 120.0, 60.0,
    )
    assert (opts.api_body_min_rate, opts.api_max_connections) == (65536, 2048)
    assert opts.engine_probe_timeout == 5.0
    join = parse_join(RawJoin(args=("etcd://h:2379/p",), advertise="1.2.3.4:2375"), {})
    assert join == JoinOptions(
        discovery=join.discovery, advertise=join.advertise, discovery_opts=join.discovery_opts
    )
    assert (join.heartbeat, join.ttl, join.delay) == (60.0, 180.0, 0.0)
    listing = parse_list(RawList(args=("a:1",)), {})
    assert listing == ListOptions(discovery="a:1", discovery_opts=listing.discovery_opts)
    assert listing.timeout == 10.0


def test_server_limits_default_to_the_manage_defaults() -> None:
    from shoal.api.server import ServerLimits  # the API's own defaults read the same table

    opts, limits = parse_manage(M, {}), ServerLimits()
    assert (limits.head_timeout, limits.idle_timeout) == (
        opts.api_head_timeout, opts.api_idle_timeout,
    )
    assert (limits.body.base, limits.body.rate) == (
        opts.api_body_timeout, float(opts.api_body_min_rate),
    )
    assert limits.max_connections == opts.api_max_connections


def test_manage_carries_globals_and_flags() -> None:
    raw = replace(
        M, cors=True, refresh_on_node_filter=True, container_name_refresh_filter="x",
        heartbeat="1s", refresh_min="1s", refresh_max="2s", failure_retry="5",
    )
    opts = parse_manage(raw, {}, GlobalOptions(debug=True, experimental=True, log_level="debug"))
    assert (opts.debug, opts.experimental, opts.log_level) == (True, True, "debug")
    assert opts.cors and opts.refresh_on_node_filter
    assert opts.container_name_refresh_filter == "x"
    assert (opts.heartbeat, opts.refresh_min, opts.refresh_max, opts.failure_retry) == (
        1.0, 1.0, 2.0, 5,
    )


def test_manage_discovery_from_env_unless_exactly_one_arg() -> None:
    env = {"SWARM_DISCOVERY": "file:///tmp/c"}
    assert parse_manage(RawManage(), env).discovery == "file:///tmp/c"
    assert parse_manage(RawManage(args=("a:1", "b:2")), env).discovery == "file:///tmp/c"
    assert parse_manage(RawManage(args=("a:1",)), env).discovery == "a:1"


def test_manage_discovery_required() -> None:
    assert manage_error(RawManage()) == (
        "discovery required to manage a cluster. See 'shoal manage --help'."
    )


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        ((), {}, ["tcp://127.0.0.1:2375"]),
        (("unix:///x.sock",), {}, ["unix:///x.sock"]),
        (("a:1", "b:2"), {}, ["a:1", "b:2"]),
        ((), {"SWARM_HOST": ":2375"}, [":2375"]),
        ((), {"SWARM_HOST": "a:1, b:2"}, ["a:1", "b:2"]),
        # The quirk: -H drops the first element of the default (env) slice.
        (("c:3",), {"SWARM_HOST": "a:1,b:2"}, ["b:2", "c:3"]),
        (("c:3",), {"SWARM_HOST": ":2375"}, ["c:3"]),
    ],
)
def test_manage_hosts_quirk(
    given: tuple[str, ...], env: dict[str, str], expected: list[str]
) -> None:
    assert parse_manage(replace(M, hosts=given), env).hosts == expected


def test_manage_advertise_from_env_and_flag() -> None:
    assert parse_manage(M, {"SWARM_ADVERTISE": "1.2.3.4:5"}).advertise == "1.2.3.4:5"
    raw = replace(M, advertise="9.9.9.9:1")
    assert parse_manage(raw, {"SWARM_ADVERTISE": "1.2.3.4:5"}).advertise == "9.9.9.9:1"


def test_manage_tls_options() -> None:
    opts = parse_manage(replace(M, tls=True, tlscert="c", tlskey="k"), {})
    assert opts.tls == TLSOptions(cert="c", key="k", ca=None, verify=False)
    opts = parse_manage(replace(M, tlsverify=True, tlscert="c", tlskey="k", tlscacert="ca"), {})
    assert opts.tls == TLSOptions(cert="c", key="k", ca="ca", verify=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tls": True}, "--tlscert and --tlskey must be provided when using --tls"),
        ({"tls": True, "tlscert": "c"}, "--tlscert and --tlskey must be provided when using --tls"),
        ({"tlsverify": True, "tlskey": "k"},
         "--tlscert and --tlskey must be provided when using --tls"),
        ({"tlsverify": True, "tlscert": "c", "tlskey": "k"},
         "--tlscacert must be provided when using --tlsverify"),
        ({"tlscert": "c"},
         "--tlscert, --tlskey and --tlscacert require the use of either --tls or --tlsverify"),
        ({"tlscacert": ""},
         "--tlscert, --tlskey and --tlscacert require the use of either --tls or --tlsverify"),
        ({"refresh_min": "0s"}, "min refresh interval should be a positive number"),
        ({"refresh_min": "-1s"}, "min refresh interval should be a positive number"),
        ({"refresh_min": "junk"}, "min refresh interval should be a positive number"),
        ({"refresh_max": "10s"}, "max refresh interval cannot be less than min refresh interval"),
        ({"refresh_max": "junk"},
         "max refresh interval cannot be less than min refresh interval"),
        ({"refresh_retry": "4"},
         "--engine-refresh-retry is deprecated. Use --engine-failure-retry"),
        ({"refresh_retry": "x"},
         'invalid value "x" for flag --engine-refresh-retry: parse error'),
        ({"failure_retry": "0"}, "invalid failure retry count"),
        ({"failure_retry": "-2"}, "invalid failure retry count"),
        ({"failure_retry": "x"},
         'invalid value "x" for flag --engine-failure-retry: parse error'),
        ({"heartbeat": "500ms"}, "--heartbeat should be at least one second"),
        ({"heartbeat": "x"}, 'invalid --heartbeat: time: invalid duration "x"'),
        ({"discovery_opts": ("novalue",)}, "--discovery-opt must contain key=value strings"),
        ({"args": ("foo://x",)}, "discovery service not supported"),
        ({"args": ("etcd://127.0.0.1:x",)}, "invalid etcd address: '127.0.0.1:x'"),
        ({"args": ("token://abc",)},
         "token discovery is no longer available: "
         "the hosted discovery service was shut down in 2019"),
        ({"args": ("a:1,b",)},
         "address b: missing port in address, please check you are using the correct "
         "discovery (missing token:// ?)"),
        ({"strategy": "fast"}, "strategy not supported"),
        ({"filters": ("health", "nope")}, "filter not supported"),
        ({"cluster_driver": "mesos-experimental"}, 'unsupported cluster "mesos-experimental"'),
        ({"cluster_opts": ("swarm.overcommit=-2",)},
         "swarm.overcommit should be larger than -1, -2.000000 is invalid"),
        ({"cluster_opts": ("swarm.overcommit=-1",)},
         "swarm.overcommit should be larger than -1, -1.000000 is invalid"),
        ({"cluster_opts": ("swarm.createretry=-1",)},
         "swarm.createretry can not be negative, -1 is invalid"),
        ({"replication": True},
         "--advertise address must be provided when using --leader-election"),
        ({"replication": True, "advertise": "nope"},
         "--advertise should be of the form ip:port or hostname:port"),
        ({"replication": True, "advertise": "a:1", "replication_ttl": "x"},
         'invalid --replication-ttl: time: invalid duration "x"'),
        ({"replication": True, "advertise": "a:1", "replication_ttl": "0s"},
         "--replication-ttl should be a positive number"),
        ({"replication": True, "advertise": "a:1"},
         "Leader election is only supported with consul, etcd and zookeeper discovery."),
    ],
)
def test_manage_errors(changes: dict[str, object], message: str) -> None:
    assert manage_error(replace(M, **changes)) == message  # type: ignore[arg-type]


def test_manage_check_order_tls_first() -> None:
    raw = RawManage(tls=True, heartbeat="0s", strategy="x")
    assert manage_error(raw) == "--tlscert and --tlskey must be provided when using --tls"
    raw = RawManage(heartbeat="0s", strategy="x", refresh_min="0s")
    assert manage_error(raw) == "min refresh interval should be a positive number"
    raw = RawManage(args=("a:1",), heartbeat="0s", strategy="x")
    assert manage_error(raw) == "--heartbeat should be at least one second"
    raw = RawManage(args=("a:1",), strategy="x", filters=("nope",))
    assert manage_error(raw) == "strategy not supported"


def test_manage_strategy_alias_and_filters_replace_defaults() -> None:
    opts = parse_manage(replace(M, strategy="binpacking", filters=("port", "health")), {})
    assert opts.strategy == "binpack"
    assert opts.filters == ["port", "health"]
    for name in ("spread", "binpack", "random"):
        assert parse_manage(replace(M, strategy=name), {}).strategy == name


def test_manage_advertise_ignored_without_replication() -> None:
    assert parse_manage(replace(M, advertise="garbage"), {}).advertise == "garbage"


# --- cluster and discovery opts ---------------------------------------------------


def test_cluster_opts_lenient_and_first_wins() -> None:
    opts, over, retry = parse_cluster_opts(
        ["swarm.overcommit=0.5", "swarm.overcommit=0.9", "junk", "x.y=1=2",
         "swarm.createretry=4"]
    )
    assert opts == {"swarm.overcommit": "0.5", "x.y": "1=2", "swarm.createretry": "4"}
    assert (over, retry) == (0.5, 4)
    assert parse_cluster_opts(["swarm.overcommit=lots", "swarm.createretry=x"])[1:] == (0.0, 0)
    assert parse_cluster_opts([])[1:] == (0.05, 0)
    assert parse_cluster_opts(["swarm.overcommit=1e-1"])[1] == pytest.approx(0.1)
    assert parse_cluster_opts(["swarm.overcommit=1_0"])[1] == 0.0


def test_cluster_opts_negative_overcommit_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse_cluster_opts(["swarm.overcommit=-0.5"])[1] == -0.5
    assert "-1 < swarm.overcommit < 0" in caplog.text


def test_manage_cluster_opts_pass_through() -> None:
    raw = replace(M, cluster_opts=("swarm.overcommit=0.1", "swarm.createretry=2", "other=x"))
    opts = parse_manage(raw, {})
    assert (opts.overcommit, opts.create_retry) == (0.1, 2)
    assert opts.cluster_opts["other"] == "x"


def test_discovery_opts() -> None:
    assert parse_discovery_opts(["kv.path=a/b", "x=1=2"]) == {"kv.path": "a/b", "x": "1=2"}
    assert parse_discovery_opts([]) == {"kv.path": "docker/swarm/nodes"}
    with pytest.raises(OptionsError, match="--discovery-opt must contain key=value strings"):
        parse_discovery_opts(["kv.path"])


@pytest.mark.parametrize(
    ("addr", "ok"),
    [("1.2.3.4:2375", True), ("host:1", True), ("[::1]:65535", True), ("h:0", False),
     ("h:65536", False), ("h", False), ("h:x", False), (":2375", True)],
)
def test_check_addr_format(addr: str, ok: bool) -> None:
    assert check_addr_format(addr) is ok


# --- join -----------------------------------------------------------------------------

J = RawJoin(args=("nodes://a:1",), advertise="1.2.3.4:2375")


def join_error(raw: RawJoin, env: dict[str, str] | None = None) -> str:
    with pytest.raises(OptionsError) as info:
        parse_join(raw, env or {})
    return info.value.message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"args": ()}, "discovery required to join a cluster. See 'shoal join --help'."),
        ({"advertise": None}, "missing mandatory --advertise flag"),
        ({"advertise": "x"}, "--advertise should be of the form ip:port or hostname:port"),
        ({"advertise": "x:0"}, "--advertise should be of the form ip:port or hostname:port"),
        ({"delay": "x"}, 'invalid --delay: time: invalid duration "x"'),
        ({"delay": "-1s"}, "--delay should not be a negative number"),
        ({"heartbeat": "x"}, 'invalid --heartbeat: time: invalid duration "x"'),
        ({"heartbeat": "999ms"}, "--heartbeat should be at least one second"),
        ({"ttl": "x"}, 'invalid --ttl: time: invalid duration "x"'),
        ({"ttl": "60s"}, "--ttl must be strictly superior to the heartbeat value"),
        ({"discovery_opts": ("a",)}, "--discovery-opt must contain key=value strings"),
        ({"args": ("etcd://h:x",)}, "invalid etcd address: 'h:x'"),
        ({"args": ("nodes://a:1",)},
         'join is not supported with "nodes" discovery: not implemented in this discovery service'),
        ({"args": ("file:///tmp/x",)},
         'join is not supported with "file" discovery: not implemented in this discovery service'),
    ],
)
def test_join_errors(changes: dict[str, object], message: str) -> None:
    assert join_error(replace(J, **changes)) == message  # type: ignore[arg-type]


def test_join_order_advertise_before_durations() -> None:
    assert join_error(RawJoin(args=("a:1",), heartbeat="x")) == "missing mandatory --advertise flag"


def test_join_advertise_from_env() -> None:
    raw = replace(J, advertise=None, ttl="x")
    assert join_error(raw, {"SWARM_ADVERTISE": "1.2.3.4:5"}) == (
        'invalid --ttl: time: invalid duration "x"'
    )


# --- list ---------------------------------------------------------------------------------


def test_list_ok_and_errors() -> None:
    opts = parse_list(RawList(args=("a:1",), timeout="2s"), {})
    assert (opts.discovery, opts.timeout) == ("a:1", 2.0)
    assert parse_list(RawList(), {"SWARM_DISCOVERY": "b:2"}).discovery == "b:2"
    cases = [
        (RawList(), "discovery required to list a cluster. See 'shoal list --help'."),
        (RawList(args=("a:1",), timeout="0s"), "--timeout should be a positive number"),
        (RawList(args=("a:1",), timeout="x"), 'invalid --timeout: time: invalid duration "x"'),
        (RawList(args=("a:1",), discovery_opts=("z",)),
         "--discovery-opt must contain key=value strings"),
        (RawList(args=("zk://h:x",)), "invalid zk address: 'h:x'"),
    ]
    for raw, message in cases:
        with pytest.raises(OptionsError) as info:
            parse_list(raw, {})
        assert info.value.message == message
