"""The command line: commands, aliases, help, Go-style flags, fatal errors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import sys
import types
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from shoal import cli, logs
from shoal.cli import build_cli, list_first, normalize_argv, option_names, run_join
from shoal.discovery.base import Discovery, DiscoveryError
from shoal.options import JoinOptions, ManageOptions, RawJoin, RawList, RawManage
from shoal.sandbox.cli import NodeStatus

CLEAN_ENV: dict[str, str | None] = {
    "SWARM_HOST": None,
    "SWARM_DISCOVERY": None,
    "SWARM_ADVERTISE": None,
    "DEBUG": None,
}


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def manage_calls(monkeypatch: pytest.MonkeyPatch) -> list[ManageOptions]:
    """Stand-in for shoal.manage (the lead's module): records options, returns 0."""
    calls: list[ManageOptions] = []

    def run(options: ManageOptions) -> int:
        calls.append(options)
        return 0

    module = types.ModuleType("shoal.manage")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shoal.manage", module)
    return calls


@pytest.fixture
def sandbox_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Stand-in for shoal.sandbox.cli (async functions, tag defaulting there)."""
    calls: list[tuple[str, tuple[Any, ...]]] = []
    module = types.ModuleType("shoal.sandbox.cli")

    async def up(n: int, labels: Sequence[str] = (), tag: str = "dev") -> str:
        if any("=" not in label for label in labels):
            raise ValueError("label must be [node-I:]KEY=VALUE")
        calls.append(("up", (n, tuple(labels), tag)))
        return "export DOCKER_HOST=x\n"

    async def down(tag: str = "dev") -> None:
        calls.append(("down", (tag,)))

    async def ls(tag: str = "dev") -> list[NodeStatus]:
        calls.append(("ls", (tag,)))
        return [
            NodeStatus("node-0", "10.1.0.2:2375", "10.1.0.2", 42, True, True, {"zone": "a"}),
            NodeStatus("node-1", "10.1.0.3:2375", "10.1.0.3", None, False, False, {}),
        ]

    module.sandbox_up = up  # type: ignore[attr-defined]
    module.sandbox_down = down  # type: ignore[attr-defined]
    module.sandbox_ls = ls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shoal.sandbox.cli", module)
    return calls


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(build_cli(), args, env={**CLEAN_ENV, **(env or {})})


# --- version, help, aliases ---------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-v", "-version"])
def test_version(flag: str) -> None:
    result = invoke([flag])
    assert result.exit_code == 0
    assert result.stdout == "shoal version 0.1.0\n"


@pytest.mark.parametrize("flag", ["--help", "-h", "-help"])
def test_app_help_lists_commands_with_aliases(flag: str) -> None:
    result = invoke([flag])
    assert result.exit_code == 0
    for row in ("manage, m", "join, j", "list, l", "create, c", "help, h", "sandbox"):
        assert row in result.stdout
    for flag_name in ("--debug", "--log-level", "--experimental"):
        assert flag_name in result.stdout


@pytest.mark.parametrize("command", ["manage", "join", "list"])
def test_command_help_has_discovery_arguments(command: str) -> None:
    result = invoke([command, "--help"])
    assert result.exit_code == 0
    for form in ("token://<token>", "consul://<ip>/<path>", "etcd://<ip1>,<ip2>/<path>",
                 "file://path/to/file", "zk://<ip1>,<ip2>/<path>", "[nodes://]<ip1>,<ip2>"):
        assert form in result.stdout
    notes = ("swarm.overcommit=0.05", "swarm.createretry=0")
    assert all((note in result.stdout) == (command == "manage") for note in notes)


def test_help_command_and_alias() -> None:
    result = invoke(["help", "manage"])
    assert result.exit_code == 0
    assert "Usage: shoal manage" in result.stdout
    assert "[nodes://]<ip1>,<ip2>" in result.stdout
    result = invoke(["h", "j"])
    assert "Usage: shoal join" in result.stdout
    assert "Commands:" in invoke(["help"]).stdout
    result = invoke(["help", "nope"])
    assert result.exit_code == 1
    assert result.stderr == "shoal: No help topic for 'nope'\n"


def test_manage_alias_reaches_manage(manage_calls: list[ManageOptions]) -> None:
    assert invoke(["m", "a:1"]).exit_code == 0
    assert manage_calls[0].discovery == "a:1"


# --- global flags ---------------------------------------------------------------------


def test_bad_log_level_is_fatal() -> None:
    result = invoke(["-l", "loud", "list", "a:1"])
    assert result.exit_code == 1
    assert result.stderr.startswith('shoal: not a valid log level: "loud"')
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {}, ("info", False, False)),
        (["--debug"], {}, ("debug", True, False)),
        (["-debug"], {}, ("debug", True, False)),
        ([], {"DEBUG": "true"}, ("debug", True, False)),
        (["--debug", "-l", "warn"], {}, ("warn", True, False)),
        (["-l", "error", "-experimental"], {}, ("error", False, True)),
        (["--log-level=debug", "--experimental"], {}, ("debug", False, True)),
        (["-log-level", "fatal"], {}, ("fatal", False, False)),
    ],
)
def test_global_flags_reach_manage(
    manage_calls: list[ManageOptions],
    args: list[str],
    env: dict[str, str],
    expected: tuple[str, bool, bool],
) -> None:
    result = invoke([*args, "manage", "a:1"], env)
    assert result.exit_code == 0, result.output
    opts = manage_calls[0]
    assert (opts.log_level, opts.debug, opts.experimental) == expected


# --- log flags after the command (dockerd's place) -------------------------------------


def _logging_now() -> tuple[int, type[logging.Formatter]]:
    """The root level and the formatter of shoal's handler, as the CLI left them."""
    root = logging.getLogger()
    handler = next(h for h in root.handlers if h.get_name() == "shoal-logfmt")
    assert handler.formatter is not None
    return root.level, type(handler.formatter)


@pytest.fixture
def logging_manage(monkeypatch: pytest.MonkeyPatch) -> list[ManageOptions]:
    """Stand-in for shoal.manage that logs one error, to see the format really used."""
    calls: list[ManageOptions] = []

    def run(options: ManageOptions) -> int:
        calls.append(options)
        logging.getLogger("shoal.test").error("hello")
        return 0

    module = types.ModuleType("shoal.manage")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shoal.manage", module)
    return calls


@pytest.mark.parametrize(
    ("args", "level", "log_format", "debug"),
    [
        (["manage", "--log-level", "debug"], "debug", "text", False),
        (["manage", "-l", "error"], "error", "text", False),
        (["manage", "-log-level=warn"], "warn", "text", False),
        (["manage", "-l=WARN"], "warn", "text", False),
        (["manage", "--log-format", "json"], "info", "json", False),
        (["manage", "-log-format=json"], "info", "json", False),
        (["-l", "debug", "manage"], "debug", "text", False),
        (["--log-format", "json", "manage"], "info", "json", False),
        # Both given: the command's wins; the other global flags still apply.
        (["-l", "debug", "manage", "-l", "error"], "error", "text", False),
        (["--log-format", "json", "manage", "--log-format", "text"], "info", "text", False),
        (["-l", "error", "manage", "--log-format", "json"], "error", "json", False),
        (["--log-format", "json", "manage", "-l", "debug"], "debug", "json", False),
        (["--debug", "manage", "--log-format", "json"], "debug", "json", True),
        (["--debug", "manage", "-l", "warn"], "warn", "text", True),
    ],
)
def test_log_flags_before_or_after_manage(
    logging_manage: list[ManageOptions], args: list[str], level: str, log_format: str,
    debug: bool,
) -> None:
    result = invoke([*args, "a:1"])
    assert result.exit_code == 0, result.output
    opts = logging_manage[0]
    assert (opts.log_level, opts.debug) == (level, debug)
    formatter = logs.JsonFormatter if log_format == "json" else logs.LogfmtFormatter
    assert _logging_now() == (logs.parse_level(level), formatter)
    line = result.stdout.splitlines()[-1]
    if log_format == "json":
        assert json.loads(line)["msg"] == "hello"
    else:
        assert line.endswith("level=error msg=hello")


def test_log_flags_after_join(monkeypatch: pytest.MonkeyPatch) -> None:
    joined: list[JoinOptions] = []

    async def fake_join(backend: Discovery, options: JoinOptions, rng: random.Random) -> None:
        joined.append(options)

    monkeypatch.setattr(cli, "run_join", fake_join)
    args = ["--advertise", "1.2.3.4:5", "etcd://127.0.0.1:1/p"]
    result = invoke(["-l", "error", "join", "--log-format", "json", "-l", "debug", *args])
    assert result.exit_code == 0, result.output
    assert len(joined) == 1
    assert _logging_now() == (logging.DEBUG, logs.JsonFormatter)


def test_log_flags_after_list() -> None:
    result = invoke(["list", "-l", "error", "--log-format", "json", "nodes://a:1"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "a:1\n"
    assert _logging_now() == (logging.ERROR, logs.JsonFormatter)


@pytest.mark.parametrize(
    ("command", "rest"),
    [
        ("manage", ["a:1"]),
        ("join", ["--advertise", "1.2.3.4:5", "etcd://127.0.0.1:1/p"]),
        ("list", ["a:1"]),
    ],
)
@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["-l", "loud"], 'shoal: not a valid log level: "loud"'),
        (["--log-level=loud"], 'shoal: not a valid log level: "loud"'),
        (["--log-format", "yaml"], 'shoal: unsupported log format "yaml" (use text or json)\n'),
    ],
)
def test_bad_log_flag_after_command_is_refused_like_before(
    logging_manage: list[ManageOptions], command: str, rest: list[str], flag: list[str],
    message: str,
) -> None:
    before = invoke([*flag, command, *rest])
    after = invoke([command, *flag, *rest])
    for result in (before, after):
        assert result.exit_code == 1
        assert result.stderr.startswith(message)
        assert result.stderr.count("\n") == 1
        assert "Traceback" not in result.output
    assert after.stderr == before.stderr
    assert logging_manage == []


@pytest.mark.parametrize(
    ("command", "raw"), [("manage", RawManage()), ("join", RawJoin()), ("list", RawList())]
)
def test_help_defaults_are_the_raw_options_defaults(command: str, raw: Any) -> None:
    """click's defaults and the raw options' come from one table: they cannot disagree."""
    fields = {f.name for f in dataclasses.fields(raw)}
    checked = 0
    for param in build_cli().commands[command].params:
        if param.name in fields and isinstance(param.default, str) and param.default:
            assert param.default == getattr(raw, param.name), param.name
            checked += 1
    assert checked == {"manage": 14, "join": 3, "list": 1}[command]


# --- single-dash (Go flag) forms ------------------------------------------------------


def test_swarm_test_suite_manage_invocation(manage_calls: list[ManageOptions]) -> None:
    result = invoke(
        ["-l", "debug", "-experimental", "manage", "-H", "127.0.0.1:4000", "--heartbeat=1s",
         "nodes://127.0.0.1:1,127.0.0.1:2"]
    )
    assert result.exit_code == 0, result.output
    opts = manage_calls[0]
    assert opts.hosts == ["127.0.0.1:4000"]
    assert opts.heartbeat == 1.0
    assert opts.discovery == "nodes://127.0.0.1:1,127.0.0.1:2"
    assert (opts.log_level, opts.experimental) == ("debug", True)


def test_swarm_test_suite_join_invocation_parses() -> None:
    result = invoke(
        ["-l", "debug", "join", "--heartbeat=1s", "--ttl=10s", "--advertise=127.0.0.1:2375",
         "nodes://127.0.0.1:1"]
    )
    # Parsed fully: the answer is about the backend, not about a flag.
    assert result.exit_code == 1
    assert result.stderr == (
        'shoal: join is not supported with "nodes" discovery: '
        "not implemented in this discovery service\n"
    )


def test_single_dash_long_options(manage_calls: list[ManageOptions]) -> None:
    result = invoke(
        ["-debug", "manage", "-strategy", "binpack", "-heartbeat=2s", "-filter", "port",
         "-f", "health", "-tls=false", "-cors", "-cluster-opt", "swarm.createretry=2",
         "-H=127.0.0.1:1", "-engine-refresh-min-interval=1s", "a:1"]
    )
    assert result.exit_code == 0, result.output
    opts = manage_calls[0]
    assert opts.strategy == "binpack"
    assert opts.heartbeat == 2.0
    assert opts.filters == ["port", "health"]
    assert opts.cors and opts.tls is None
    assert opts.create_retry == 2
    assert opts.hosts == ["127.0.0.1:1"]
    assert opts.refresh_min == 1.0


def test_bool_flag_with_true_value() -> None:
    result = invoke(["manage", "--tls=true", "a:1"])
    assert result.exit_code == 1
    assert result.stderr == "shoal: --tlscert and --tlskey must be provided when using --tls\n"


def test_normalize_argv_rules() -> None:
    longs, flags, shorts = option_names(build_cli())
    assert {"debug", "heartbeat", "strategy", "tls", "help", "version"} <= longs
    assert {"debug", "tls", "cors", "api-enable-cors"} <= flags
    assert {"H", "f", "l", "c"} <= shorts
    assert normalize_argv(
        ["-debug", "-l", "debug", "-heartbeat=1s", "-tls=1", "--cors=false", "-H=x", "-unknown",
         "--", "-debug"],
        longs, flags, shorts,
    ) == ["--debug", "-l", "debug", "--heartbeat=1s", "--tls", "-H", "x", "-unknown", "--",
          "-debug"]


# --- manage ------------------------------------------------------------------------------


def test_manage_env_hosts_quirk(manage_calls: list[ManageOptions]) -> None:
    assert invoke(["manage", "-H", "c:3", "a:1"], {"SWARM_HOST": "a:1,b:2"}).exit_code == 0
    assert invoke(["manage", "a:1"], {"SWARM_HOST": ":2375"}).exit_code == 0
    assert manage_calls[0].hosts == ["b:2", "c:3"]
    assert manage_calls[1].hosts == [":2375"]


def test_manage_env_discovery_and_advertise(manage_calls: list[ManageOptions]) -> None:
    env = {"SWARM_DISCOVERY": "x:1", "SWARM_ADVERTISE": "1.2.3.4:5"}
    assert invoke(["manage"], env).exit_code == 0
    assert (manage_calls[0].discovery, manage_calls[0].advertise) == ("x:1", "1.2.3.4:5")


def test_manage_flags_end_to_end(manage_calls: list[ManageOptions]) -> None:
    result = invoke(
        ["manage", "--addr", "1.1.1.1:1", "--api-enable-cors", "-c", "swarm",
         "--cluster-opt", "swarm.overcommit=0.1", "--discovery-opt", "kv.path=x",
         "--refresh-on-node-filter", "--container-name-refresh-filter", "n",
         "--engine-refresh-max-interval", "90s", "--engine-failure-retry", "7",
         "--tlsverify", "--tlscert", "c", "--tlskey", "k", "--tlscacert", "ca", "a:1"]
    )
    assert result.exit_code == 0, result.output
    opts = manage_calls[0]
    assert opts.advertise == "1.1.1.1:1" and opts.cors
    assert opts.overcommit == 0.1 and opts.discovery_opts == {"kv.path": "x"}
    assert opts.refresh_on_node_filter and opts.container_name_refresh_filter == "n"
    assert (opts.refresh_max, opts.failure_retry) == (90.0, 7)
    assert opts.tls is not None and opts.tls.verify and opts.tls.ca == "ca"


def test_manage_exit_code_from_run(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("shoal.manage")
    module.run = lambda options: 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shoal.manage", module)
    assert invoke(["manage", "a:1"]).exit_code == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["manage"], "discovery required to manage a cluster. See 'shoal manage --help'."),
        (["manage", "--replication", "a:1"],
         "--advertise address must be provided when using --leader-election"),
        (["manage", "--replication", "--advertise", "1.2.3.4:1", "a:1"],
         "Leader election is only supported with consul, etcd and zookeeper discovery."),
        (["manage", "consul://127.0.0.1:x/x"], "invalid consul address: '127.0.0.1:x'"),
        (["manage", "--engine-refresh-retry", "5", "a:1"],
         "--engine-refresh-retry is deprecated. Use --engine-failure-retry"),
        (["manage", "--cluster-driver", "mesos", "a:1"], 'unsupported cluster "mesos"'),
        (["manage", "-f", "nope", "a:1"], "filter not supported"),
        (["manage", "token://x"],
         "token discovery is no longer available: "
         "the hosted discovery service was shut down in 2019"),
    ],
)
def test_manage_fatal_one_line(args: list[str], message: str) -> None:
    result = invoke(args)
    assert result.exit_code == 1
    assert result.stderr == f"shoal: {message}\n"
    assert "Traceback" not in result.output


def test_crash_in_manage_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("shoal.manage")

    def run(options: ManageOptions) -> int:
        raise RuntimeError("listener exploded")

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shoal.manage", module)
    result = invoke(["manage", "a:1"])
    assert result.exit_code == 1
    assert result.stderr == "shoal: listener exploded\n"


# --- create, list, join --------------------------------------------------------------------


def test_create() -> None:
    result = invoke(["create"])
    assert result.exit_code == 1
    assert result.stderr.startswith("shoal: token discovery is no longer available")
    result = invoke(["c", "x"])
    assert result.exit_code == 1
    assert result.stderr == (
        "shoal: the `create` command takes no arguments. See 'shoal create --help'.\n"
    )


def test_list_nodes_and_alias() -> None:
    result = invoke(["l", "nodes://10.0.0.[1:2]:2375,unix:///x.sock"])
    assert result.exit_code == 0
    assert result.stdout == "10.0.0.1:2375\n10.0.0.2:2375\nunix:///x.sock\n"


def test_list_file(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.write_text("# nodes\na:1 # first\nb:[1:2]\n")
    result = invoke(["list", f"file://{path}"])
    assert result.exit_code == 0
    assert result.stdout == "a:1\nb:1\nb:2\n"
    result = invoke(["list", f"file://{tmp_path}/missing"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"shoal: failed to read '{tmp_path}/missing': ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list"], "discovery required to list a cluster. See 'shoal list --help'."),
        (["list", "--timeout", "0s", "a:1"], "--timeout should be a positive number"),
        (["list", "--timeout", "x", "a:1"], 'invalid --timeout: time: invalid duration "x"'),
        (["list", "--discovery-opt", "x", "a:1"], "--discovery-opt must contain key=value strings"),
        (["list", "a"], "address a: missing port in address, please check you are using the "
                        "correct discovery (missing token:// ?)"),
        (["join", "a:1"], "missing mandatory --advertise flag"),
        (["join"], "discovery required to join a cluster. See 'shoal join --help'."),
        (["j", "--advertise", "x", "a:1"],
         "--advertise should be of the form ip:port or hostname:port"),
        (["join", "--addr", "h:1", "--ttl", "1s", "a:1"],
         "--ttl must be strictly superior to the heartbeat value"),
        (["join", "--addr", "h:1", "zk://h:x/p"], "invalid zk address: 'h:x'"),
    ],
)
def test_list_join_fatal(args: list[str], message: str) -> None:
    result = invoke(args)
    assert result.exit_code == 1
    assert result.stderr == f"shoal: {message}\n"


class _Silent(Discovery):
    async def watch(self) -> AsyncIterator[list[str] | DiscoveryError]:
        yield DiscoveryError("boom")

    async def close(self) -> None:
        pass


class _Never(Discovery):
    def __init__(self) -> None:
        self.closed = False

    async def watch(self) -> AsyncIterator[list[str] | DiscoveryError]:
        while True:
            await asyncio.sleep(3600)
            yield []

    async def close(self) -> None:
        self.closed = True


async def test_list_first_error_and_timeout() -> None:
    with pytest.raises(DiscoveryError, match="boom"):
        await list_first(_Silent(), 5)
    never = _Never()
    with pytest.raises(DiscoveryError, match="Timed out"):
        await list_first(never, 0.01)
    assert never.closed


class _Registry(Discovery):
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.registered: list[str] = []

    async def watch(self) -> AsyncIterator[list[str] | DiscoveryError]:
        yield []

    async def register(self, addr: str) -> None:
        self.registered.append(addr)
        if self.fail:
            raise ConnectionError("store down")

    async def close(self) -> None:
        pass


async def test_run_join_registers_each_beat_and_logs_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = JoinOptions(discovery="etcd://h/p", advertise="1.2.3.4:5", heartbeat=0.0)
    backend = _Registry(fail=True)
    with caplog.at_level(logging.INFO):
        await run_join(backend, options, random.Random(1), beats=3)
    assert backend.registered == ["1.2.3.4:5"] * 3
    assert caplog.text.count("Registering on the discovery service every 0s...") == 3
    assert caplog.text.count("store down") == 3


async def test_run_join_delay(caplog: pytest.LogCaptureFixture) -> None:
    options = JoinOptions(discovery="d", advertise="a:1", heartbeat=0.0, delay=0.001)
    with caplog.at_level(logging.INFO):
        await run_join(_Registry(fail=False), options, random.Random(1), beats=1)
    assert "to avoid synchronized registration" in caplog.text


# --- sandbox --------------------------------------------------------------------------------


def test_sandbox_commands(sandbox_calls: list[tuple[str, tuple[Any, ...]]]) -> None:
    result = invoke(["sandbox", "up", "-n", "3", "--label", "0:zone=a", "--label", "ssd=1",
                     "--tag", "x"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "export DOCKER_HOST=x\n"
    listing = invoke(["sandbox", "ls"])
    assert listing.exit_code == 0, listing.output
    assert listing.stdout.splitlines() == [
        "NAME    ADDRESS        IP        PID  STATE    LABELS",
        "node-0  10.1.0.2:2375  10.1.0.2  42   up       zone=a",
        "node-1  10.1.0.3:2375  10.1.0.3  -    stopped",
    ]
    assert invoke(["sandbox", "down", "--tag", "x"]).exit_code == 0
    assert sandbox_calls == [
        ("up", (3, ("0:zone=a", "ssd=1"), "x")),
        ("ls", ("dev",)),
        ("down", ("x",)),
    ]


def test_sandbox_bad_label_is_fatal(sandbox_calls: list[tuple[str, tuple[Any, ...]]]) -> None:
    result = invoke(["sandbox", "up", "-n", "2", "--label", "oops"])
    assert result.exit_code == 1
    assert result.stderr == "shoal: label must be [node-I:]KEY=VALUE\n"
    assert sandbox_calls == []
    assert invoke(["sandbox", "up", "-n", "0"]).exit_code == 2
