"""The ``shoal`` command line: classic Swarm's commands and flags, single-dash forms included."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import click

from shoal import __version__, logs
from shoal.discovery.base import Discovery, DiscoveryError
from shoal.discovery.url import TOKEN_GONE, parse_discovery
from shoal.durations import format_duration
from shoal.flag_values import DEFAULTS
from shoal.manage_flags import JOIN_FLAGS, LIST_FLAGS, MANAGE_FLAGS, log_flags, with_flags
from shoal.options import (
    GlobalOptions,
    JoinOptions,
    OptionsError,
    RawJoin,
    RawList,
    RawManage,
    parse_bool,
    parse_global,
    parse_join,
    parse_list,
    parse_manage,
)

__all__ = ["build_cli", "list_first", "main", "normalize_argv", "run_join"]

_log = logging.getLogger(__name__)

DISCOVERY_HELP = """\b
Arguments:
   <discovery>    discovery service to use [$SWARM_DISCOVERY]
                   * token://<token>
                   * consul://<ip>/<path>
                   * etcd://<ip1>,<ip2>/<path>
                   * file://path/to/file
                   * zk://<ip1>,<ip2>/<path>
                   * [nodes://]<ip1>,<ip2>
"""
_CLUSTER_OPTS = (
    ("swarm.overcommit", DEFAULTS.overcommit, "overcommit to apply on resources"),
    ("swarm.createretry", DEFAULTS.create_retry,
     "container create retry count after initial failure"),
)
MANAGE_NOTES = "\b\nCluster options (--cluster-opt):\n" + "".join(
    f"   {key + '=' + value:<25}{text}\n" for key, value, text in _CLUSTER_OPTS
)
CONTEXT = {"help_option_names": ["-h", "--help"]}


class Fatal(click.ClickException):
    """A fatal error: one ``shoal: <message>`` line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"shoal: {self.message}", err=True)


def _fail(message: str) -> NoReturn:
    raise Fatal(message)


class AliasGroup(click.Group):
    """A group whose commands also answer to a short alias (``m`` for ``manage``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases: dict[str, str] = {}

    def add_alias(self, alias: str, name: str) -> None:
        self.aliases[alias] = name

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd is not None else name), cmd, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        by_name = {name: alias for alias, name in self.aliases.items()}
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            label = f"{name}, {by_name[name]}" if name in by_name else name
            rows.append((label, cmd.get_short_help_str(limit=60)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class RootGroup(AliasGroup):
    """The ``shoal`` group: rewrites Go-style argv and turns crashes into one line."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        argv = kwargs.pop("args", None)
        if args:
            argv, args = args[0], args[1:]
        argv = list(sys.argv[1:] if argv is None else argv)
        kwargs.setdefault("prog_name", "shoal")
        longs, flags, shorts = option_names(self)
        try:
            return super().main(normalize_argv(argv, longs, flags, shorts), *args, **kwargs)
        except Exception as exc:  # a crash must still be one clear line, no traceback
            _log.debug("unexpected error", exc_info=True)
            click.echo(f"shoal: {exc}", err=True)
            sys.exit(1)


def option_names(root: click.Command) -> tuple[set[str], set[str], set[str]]:
    """Every long option name, the boolean ones, and every short letter in the tree."""
    longs: set[str] = {"help"}
    flags: set[str] = set()
    shorts: set[str] = set()
    stack = [root]
    while stack:
        cmd = stack.pop()
        for param in cmd.params:
            if not isinstance(param, click.Option):
                continue
            for opt in (*param.opts, *param.secondary_opts):
                if opt.startswith("--"):
                    longs.add(opt[2:])
                    if param.is_flag:
                        flags.add(opt[2:])
                elif len(opt) == 2 and not param.is_flag:
                    shorts.add(opt[1])
        if isinstance(cmd, click.Group):
            stack.extend(cmd.commands.values())
    return longs, flags, shorts


def normalize_argv(
    argv: Sequence[str], longs: set[str], flags: set[str], shorts: set[str]
) -> list[str]:
    """Rewrite Go flag syntax for click.

    ``-name``/``-name=v`` become ``--name``/``--name=v`` for known long names;
    ``--flag=true|false`` on a boolean becomes ``--flag`` or nothing; ``-H=v``
    becomes ``-H v``. Everything after ``--`` is left alone.
    """
    out: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[index:])
            break
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            name = arg[1:].partition("=")[0]
            if name in longs:
                arg = "-" + arg
            elif arg[2] == "=" and arg[1] in shorts:
                out.extend([arg[:2], arg[3:]])
                continue
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if eq and name in flags:
                wanted = parse_bool(value)
                if wanted is False:
                    continue
                if wanted is True:
                    arg = "--" + name
        out.append(arg)
    return out


async def list_first(backend: Discovery, seconds: float) -> list[str]:
    """The first batch of entries; DiscoveryError on a discovery error or ``Timed out``."""
    watch = backend.watch()
    try:
        async with asyncio.timeout(seconds):
            item = await anext(watch)
    except (TimeoutError, StopAsyncIteration):
        raise DiscoveryError("Timed out") from None
    finally:
        await backend.close()
        aclose = getattr(watch, "aclose", None)
        if aclose is not None:
            await aclose()
    if isinstance(item, DiscoveryError):
        raise item
    return item


async def run_join(
    backend: Discovery,
    options: JoinOptions,
    rng: random.Random,
    beats: int | None = None,
) -> None:
    """Register every heartbeat, forever (or ``beats`` times); errors are only logged."""
    if options.delay > 0:
        delay = rng.uniform(0, options.delay)
        _log.info(
            "Add a random delay %s to avoid synchronized registration", format_duration(delay)
        )
        await asyncio.sleep(delay)
    fields = {"addr": options.advertise, "discovery": options.discovery}
    count = 0
    while beats is None or count < beats:
        count += 1
        _log.info(
            "Registering on the discovery service every %s...",
            format_duration(options.heartbeat),
            extra={"fields": fields},
        )
        try:
            await backend.register(options.advertise)
        except Exception as exc:  # classic Swarm logs any failure and keeps beating
            _log.error("%s", exc)
        await asyncio.sleep(options.heartbeat)


_GLOBAL_FLAGS = "shoal.global_flags"


@dataclass(frozen=True)
class GlobalFlags:
    """The flags before the command as typed; a command's own log flags are merged into them
    and the whole validated again, so both places take and refuse the same values."""

    debug: bool = False
    experimental: bool = False
    log_level: str | None = None
    log_format: str | None = None

    def setup(self, ctx: click.Context) -> GlobalOptions:
        """Validate, set logging up and remember these flags (in ``ctx.meta``, shared)."""
        try:
            glob = parse_global(
                debug=self.debug, experimental=self.experimental, log_level=self.log_level,
                env=os.environ, log_format=self.log_format,
            )
        except OptionsError as exc:
            _fail(exc.message)
        logs.setup(glob.log_level, glob.log_format)
        ctx.meta[_GLOBAL_FLAGS] = self
        ctx.obj = glob
        return glob


def _globals(ctx: click.Context, log_level: str | None, log_format: str | None) -> GlobalOptions:
    """The global options, with the command's own ``-l``/``--log-format`` winning if given.

    A level given after the command counts as an explicit ``-l``: it wins over ``--debug``.
    """
    if log_level is None and log_format is None:
        obj = ctx.find_object(GlobalOptions)
        return obj if obj is not None else GlobalOptions()
    flags: GlobalFlags = ctx.meta.get(_GLOBAL_FLAGS, GlobalFlags())
    if log_level is not None:
        flags = replace(flags, log_level=log_level)
    if log_format is not None:
        flags = replace(flags, log_format=log_format)
    return flags.setup(ctx)


def _add_manage(group: AliasGroup) -> None:
    @group.command(
        "manage",
        help="Manage a docker cluster",
        epilog=DISCOVERY_HELP + "\n" + MANAGE_NOTES,
        context_settings=CONTEXT,
    )
    @with_flags(MANAGE_FLAGS, log_flags(after_command=True))
    @click.pass_context
    def manage(ctx: click.Context, /, discovery: tuple[str, ...], log_level: str | None,
               log_format: str | None, **flags: Any) -> None:
        glob = _globals(ctx, log_level, log_format)
        try:
            options = parse_manage(RawManage(args=discovery, **flags), os.environ, glob)
        except OptionsError as exc:
            _fail(exc.message)
        from shoal.manage import run

        ctx.exit(run(options))

    group.add_alias("m", "manage")


def _add_join(group: AliasGroup) -> None:
    @group.command("join", help="Join a docker cluster", epilog=DISCOVERY_HELP,
                   context_settings=CONTEXT)
    @with_flags(JOIN_FLAGS, log_flags(after_command=True))
    @click.pass_context
    def join(ctx: click.Context, /, discovery: tuple[str, ...], log_level: str | None,
             log_format: str | None, **flags: Any) -> None:
        _globals(ctx, log_level, log_format)
        try:
            options = parse_join(RawJoin(args=discovery, **flags), os.environ)
            backend = parse_discovery(
                options.discovery, options.heartbeat, options.ttl, options.discovery_opts
            )
        except (OptionsError, DiscoveryError) as exc:
            _fail(str(exc))
        asyncio.run(run_join(backend, options, random.Random()))

    group.add_alias("j", "join")


def _add_list(group: AliasGroup) -> None:
    @group.command("list", help="List nodes in a cluster", epilog=DISCOVERY_HELP,
                   context_settings=CONTEXT)
    @with_flags(LIST_FLAGS, log_flags(after_command=True))
    @click.pass_context
    def list_(ctx: click.Context, /, discovery: tuple[str, ...], log_level: str | None,
              log_format: str | None, **flags: Any) -> None:
        _globals(ctx, log_level, log_format)
        try:
            options = parse_list(RawList(args=discovery, **flags), os.environ)
            backend = parse_discovery(
                options.discovery, options.timeout, 0.0, options.discovery_opts
            )
            entries = asyncio.run(list_first(backend, options.timeout))
        except (OptionsError, DiscoveryError) as exc:
            _fail(str(exc))
        for entry in entries:
            click.echo(entry)

    group.add_alias("l", "list")


def _add_create(group: AliasGroup) -> None:
    @group.command("create", help="Create a cluster", context_settings=CONTEXT)
    @click.argument("args", nargs=-1, metavar="")
    def create(args: tuple[str, ...]) -> None:
        if args:
            _fail("the `create` command takes no arguments. See 'shoal create --help'.")
        _fail(TOKEN_GONE + "; use nodes://, file:// or a key-value store instead")

    group.add_alias("c", "create")


def _add_help(group: AliasGroup) -> None:
    @group.command("help", help="Shows a list of commands or help for one command",
                   context_settings=CONTEXT)
    @click.argument("command", required=False)
    @click.pass_context
    def help_(ctx: click.Context, command: str | None) -> None:
        parent = ctx.parent
        assert parent is not None
        if command is None:
            click.echo(group.get_help(parent))
            return
        cmd = group.get_command(parent, command)
        if cmd is None:
            _fail(f"No help topic for '{command}'")
        sub = cmd.make_context(cmd.name, [], parent=parent, resilient_parsing=True)
        click.echo(cmd.get_help(sub))

    group.add_alias("h", "help")


def _sandbox_table(nodes: Sequence[Any]) -> str:
    """``sandbox ls`` rows from the sandbox library's NodeStatus records."""
    rows = [("NAME", "ADDRESS", "IP", "PID", "STATE", "LABELS")]
    for node in nodes:
        state = "up" if node.responding else ("running" if node.running else "stopped")
        labels = ",".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
        pid = "-" if node.pid is None else str(node.pid)
        rows.append((node.name, node.addr, node.ip, pid, state, labels))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _sandbox_up(nodes: int | None, labels: tuple[str, ...], simulated: int | None,
                containers: int, seed: int, low_port: int, tag: dict[str, str]) -> None:
    """Body of `sandbox up`: real nodes through asyncio, simulated engines on uvloop."""
    if (nodes is None) == (simulated is None):
        raise click.UsageError("give exactly one of -n/--nodes and --simulated")
    if simulated is not None:
        import uvloop

        from shoal.sandbox.cli import sandbox_simulated

        def emit(line: str) -> None:
            click.echo(line)

        try:  # uvloop, as for `manage`: the simulator must not be what a benchmark times
            uvloop.run(sandbox_simulated(simulated, containers, labels, emit=emit,
                                          seed=seed, low_port=low_port))
        except (ValueError, OSError) as exc:
            _fail(str(exc))
        return
    from shoal.sandbox.cli import sandbox_up

    assert nodes is not None
    try:
        text = asyncio.run(sandbox_up(nodes, labels, **tag))
    except ValueError as exc:
        _fail(str(exc))
    click.echo(text.rstrip("\n"))


def _add_sandbox(group: AliasGroup) -> None:
    @group.group("sandbox", help="Run a cluster of local dockerd nodes for trying and testing",
                 context_settings=CONTEXT)
    def sandbox() -> None:
        pass

    tag_option = click.option("--tag", default=None,
                              help="name of the sandbox (up to 8 of a-z0-9)  [default: dev]")

    def tag_kwargs(tag: str | None) -> dict[str, str]:
        return {} if tag is None else {"tag": tag}

    @sandbox.command("up", help="Start N dockerd nodes (or N simulated engines)",
                     context_settings=CONTEXT)
    @click.option("-n", "--nodes", "nodes", type=click.IntRange(min=1), default=None,
                  help="number of nodes")
    @click.option("--label", "labels", multiple=True, metavar="[node-I:]KEY=VALUE",
                  help="engine label, for one node or all (repeatable)")
    @click.option("--simulated", type=click.IntRange(min=1), default=None, metavar="N",
                  help="serve N simulated engines in the foreground instead of real nodes")
    @click.option("--containers", type=click.IntRange(min=0), default=30, show_default=True,
                  help="containers on each simulated engine")
    @click.option("--seed", type=int, default=0, show_default=True,
                  help="seed of the simulated engines' generated state")
    @click.option("--port", "low_port", type=click.IntRange(1, 65535), default=20000,
                  show_default=True, help="lowest port of the simulated engines' range")
    @tag_option
    def up(nodes: int | None, labels: tuple[str, ...], simulated: int | None, containers: int,
           seed: int, low_port: int, tag: str | None) -> None:
        _sandbox_up(nodes, labels, simulated, containers, seed, low_port, tag_kwargs(tag))

    @sandbox.command("down", help="Stop the sandbox nodes", context_settings=CONTEXT)
    @tag_option
    def down(tag: str | None) -> None:
        from shoal.sandbox.cli import sandbox_down

        asyncio.run(sandbox_down(**tag_kwargs(tag)))

    @sandbox.command("ls", help="List the sandbox nodes", context_settings=CONTEXT)
    @tag_option
    def ls(tag: str | None) -> None:
        from shoal.sandbox.cli import sandbox_ls

        click.echo(_sandbox_table(asyncio.run(sandbox_ls(**tag_kwargs(tag)))))


def build_cli() -> RootGroup:
    """Build the command tree (a fresh one per call, so tests share nothing)."""

    @click.group("shoal", cls=RootGroup, help="A Docker-native clustering system",
                 context_settings=CONTEXT)
    @click.version_option(__version__, "--version", "-v", message="shoal version %(version)s")
    @click.option("--debug", is_flag=True, help="debug mode [$DEBUG]")
    @with_flags(log_flags(after_command=False))
    @click.option("--experimental", is_flag=True, help="run the experimental build")
    @click.pass_context
    def root(
        ctx: click.Context, debug: bool, log_level: str | None, log_format: str | None,
        experimental: bool,
    ) -> None:
        GlobalFlags(debug, experimental, log_level, log_format).setup(ctx)

    assert isinstance(root, RootGroup)
    for add in (_add_manage, _add_join, _add_list, _add_create, _add_help, _add_sandbox):
        add(root)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    build_cli().main(args=list(sys.argv[1:] if argv is None else argv), prog_name="shoal")
