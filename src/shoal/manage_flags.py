"""The commands' flags as tables, so cli.py is about what the commands do.

`manage`'s table is classic Swarm's flags with their help, then shoal's own (API limits,
probe timeout, metrics); `join` and `list` follow, then the log flags, which go both before
the command (classic Swarm) and after it (dockerd). Defaults come from ``DEFAULTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import click

from shoal.flag_values import DEFAULTS
from shoal.logs import LOG_FORMATS
from shoal.options import DEFAULT_HOST

__all__ = ["JOIN_FLAGS", "LIST_FLAGS", "MANAGE_FLAGS", "log_flags", "with_flags"]

Decorator = Callable[[Any], Any]

MANAGE_FLAGS: Final[tuple[Decorator, ...]] = (
    click.argument("discovery", nargs=-1, metavar="<discovery>"),
    click.option("--strategy", default=DEFAULTS.strategy, show_default=True,
                 help="placement strategy to use [spread, binpack, random]"),
    click.option("--filter", "-f", "filters", multiple=True,
                 help="filter to use [health, port, containerslots, dependency, "
                 "affinity, constraint, whitelist]  (default: all)"),
    click.option("--host", "-H", "hosts", multiple=True, metavar="ADDR",
                 help=f"ip/socket to listen on [$SWARM_HOST]  (default: {DEFAULT_HOST})"),
    click.option("--replication", is_flag=True,
                 help="Enable Swarm manager replication"),
    click.option("--replication-ttl", default=DEFAULTS.replication_ttl, metavar="DURATION",
                 show_default=True, help="Leader lock release time on failure"),
    click.option("--advertise", "--addr", "advertise", default=None,
                 help="Address of the swarm manager joining the cluster. Other swarm "
                 "manager(s) MUST be able to reach the swarm manager at this address. "
                 "[$SWARM_ADVERTISE]"),
    click.option("--tls", is_flag=True, help="use TLS; implied by --tlsverify=true"),
    click.option("--tlscacert", default=None, help="trust only remotes providing a "
                 "certificate signed by the CA given here"),
    click.option("--tlscert", default=None, help="path to TLS certificate file"),
    click.option("--tlskey", default=None, help="path to TLS key file"),
    click.option("--tlsverify", is_flag=True, help="use TLS and verify the remote"),
    click.option("--engine-refresh-min-interval", "refresh_min", default=DEFAULTS.refresh_min,
                 metavar="DURATION", show_default=True,
                 help="set engine refresh minimum interval"),
    click.option("--engine-refresh-max-interval", "refresh_max", default=DEFAULTS.refresh_max,
                 metavar="DURATION", show_default=True,
                 help="set engine refresh maximum interval"),
    click.option("--engine-failure-retry", "failure_retry", default=DEFAULTS.failure_retry,
                 show_default=True, help="set engine failure retry count"),
    click.option("--engine-refresh-retry", "refresh_retry", default=DEFAULTS.refresh_retry,
                 show_default=True, help="deprecated; replaced by --engine-failure-retry"),
    click.option("--engine-probe-timeout", default=DEFAULTS.engine_probe_timeout,
                 metavar="DURATION", show_default=True,
                 help="flag an engine unhealthy when its health probe (once per refresh "
                 "interval) gets no answer this long (0: no probe)"),
    click.option("--heartbeat", default=DEFAULTS.heartbeat, metavar="DURATION",
                 show_default=True, help="period between each heartbeat"),
    click.option("--api-enable-cors", "--cors", "cors", is_flag=True,
                 help="enable CORS headers in the remote API"),
    click.option("--cluster-driver", "-c", "cluster_driver", default=DEFAULTS.cluster_driver,
                 show_default=True, help="cluster driver to use [swarm]"),
    click.option("--cluster-opt", "cluster_opts", multiple=True, metavar="KEY=VALUE",
                 help="cluster driver options"),
    click.option("--discovery-opt", "discovery_opts", multiple=True, metavar="KEY=VALUE",
                 help="discovery options"),
    click.option("--refresh-on-node-filter", is_flag=True,
                 help="refresh the engines named in a container list's node filter first"),
    click.option("--container-name-refresh-filter", default="",
                 help="refresh all engines when a container list filters on this exact name"),
    click.option("--api-head-timeout", default=DEFAULTS.api_head_timeout, metavar="DURATION",
                 show_default=True,
                 help="time a client has to send a request head (0: no limit)"),
    click.option("--api-idle-timeout", default=DEFAULTS.api_idle_timeout, metavar="DURATION",
                 show_default=True,
                 help="close keep-alive connections idle this long (0: never)"),
    click.option("--api-body-timeout", default=DEFAULTS.api_body_timeout, metavar="DURATION",
                 show_default=True,
                 help="time for a request body, plus its size over --api-body-min-rate; "
                 "a streamed body may pause this long (0: no limit)"),
    click.option("--api-body-min-rate", default=DEFAULTS.api_body_min_rate, metavar="BYTES",
                 show_default=True, help="bytes per second a request body is given time for"),
    click.option("--api-max-connections", default=DEFAULTS.api_max_connections, metavar="N",
                 show_default=True,
                 help="open API connections; more are closed at once (0: no cap)"),
    click.option("--metrics-addr", "metrics_addr", default="", metavar="HOST:PORT",
                 help="serve Prometheus metrics (/metrics) and the cluster page (/) here "
                 "(default: off)"),
)

JOIN_FLAGS: Final[tuple[Decorator, ...]] = (
    click.argument("discovery", nargs=-1, metavar="<discovery>"),
    click.option("--advertise", "--addr", "advertise", default=None,
                 help="Address of the Docker Engine joining the cluster. Swarm manager(s) "
                 "MUST be able to reach the Docker Engine at this address. [$SWARM_ADVERTISE]"),
    click.option("--heartbeat", default=DEFAULTS.heartbeat, metavar="DURATION",
                 show_default=True, help="period between each heartbeat"),
    click.option("--ttl", default=DEFAULTS.ttl, metavar="DURATION", show_default=True,
                 help="set the expiration of an ephemeral node"),
    click.option("--delay", default=DEFAULTS.delay, metavar="DURATION", show_default=True,
                 help="add a random delay in [0s,delay] to avoid synchronized registration"),
    click.option("--discovery-opt", "discovery_opts", multiple=True, metavar="KEY=VALUE",
                 help="discovery options"),
)
LIST_FLAGS: Final[tuple[Decorator, ...]] = (
    click.argument("discovery", nargs=-1, metavar="<discovery>"),
    click.option("--timeout", default=DEFAULTS.timeout, metavar="DURATION", show_default=True,
                 help="timeout period"),
    click.option("--discovery-opt", "discovery_opts", multiple=True, metavar="KEY=VALUE",
                 help="discovery options"),
)


def log_flags(*, after_command: bool) -> tuple[Decorator, ...]:
    """``-l/--log-level`` and ``--log-format``; None when not given, so a later one can win.

    The default is in the help text rather than click's ``default``: before the command it
    applies, after it the global flag (or ``--debug``) does, unless given there.
    """
    wins = "; wins over the same flag before the command" if after_command else ""
    return (
        click.option("--log-level", "-l", "log_level", default=None, metavar="LEVEL",
                     help="Log level (options: debug, info, warn, error, fatal, panic)"
                     f"{wins}  [default: {DEFAULTS.log_level}]"),
        click.option("--log-format", "log_format", default=None, metavar="FORMAT",
                     help=f"Log format (options: {', '.join(LOG_FORMATS)})"
                     f"{wins}  [default: {DEFAULTS.log_format}]"),
    )


def with_flags(*tables: tuple[Decorator, ...]) -> Decorator:
    """A decorator applying the tables' rows, first row outermost (as if stacked)."""

    def apply(command: Any) -> Any:
        for flag in reversed([row for table in tables for row in table]):
            command = flag(command)
        return command

    return apply
