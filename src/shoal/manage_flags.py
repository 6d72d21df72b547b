"""The `manage` command's flags, as one table: classic Swarm's flags with their defaults and
help, then shoal's own (API limits, probe timeout, metrics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import click

from shoal.options import DEFAULT_HOST

Decorator = Callable[[Any], Any]

MANAGE_FLAGS: Final[tuple[Decorator, ...]] = (
    click.argument("discovery", nargs=-1, metavar="<discovery>"),
    click.option("--strategy", default="spread", show_default=True,
                 help="placement strategy to use [spread, binpack, random]"),
    click.option("--filter", "-f", "filters", multiple=True,
                 help="filter to use [health, port, containerslots, dependency, "
                 "affinity, constraint, whitelist]  (default: all)"),
    click.option("--host", "-H", "hosts", multiple=True, metavar="ADDR",
                 help=f"ip/socket to listen on [$SWARM_HOST]  (default: {DEFAULT_HOST})"),
    click.option("--replication", is_flag=True,
                 help="Enable Swarm manager replication"),
    click.option("--replication-ttl", default="20s", metavar="DURATION", show_default=True,
                 help="Leader lock release time on failure"),
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
    click.option("--engine-refresh-min-interval", "refresh_min", default="30s", metavar="DURATION",
                 show_default=True, help="set engine refresh minimum interval"),
    click.option("--engine-refresh-max-interval", "refresh_max", default="60s", metavar="DURATION",
                 show_default=True, help="set engine refresh maximum interval"),
    click.option("--engine-failure-retry", "failure_retry", default="3", show_default=True,
                 help="set engine failure retry count"),
    click.option("--engine-refresh-retry", "refresh_retry", default="3", show_default=True,
                 help="deprecated; replaced by --engine-failure-retry"),
    click.option("--engine-probe-timeout", default="5s", metavar="DURATION", show_default=True,
                 help="flag an engine unhealthy when its health probe (once per refresh "
                 "interval) gets no answer this long (0: no probe)"),
    click.option("--heartbeat", default="60s", metavar="DURATION", show_default=True,
                 help="period between each heartbeat"),
    click.option("--api-enable-cors", "--cors", "cors", is_flag=True,
                 help="enable CORS headers in the remote API"),
    click.option("--cluster-driver", "-c", "cluster_driver", default="swarm",
                 show_default=True, help="cluster driver to use [swarm]"),
    click.option("--cluster-opt", "cluster_opts", multiple=True, metavar="KEY=VALUE",
                 help="cluster driver options"),
    click.option("--discovery-opt", "discovery_opts", multiple=True, metavar="KEY=VALUE",
                 help="discovery options"),
    click.option("--refresh-on-node-filter", is_flag=True,
                 help="refresh the engines named in a container list's node filter first"),
    click.option("--container-name-refresh-filter", default="",
                 help="refresh all engines when a container list filters on this exact name"),
    click.option("--api-head-timeout", default="30s", metavar="DURATION", show_default=True,
                 help="time a client has to send a request head (0: no limit)"),
    click.option("--api-idle-timeout", default="2m0s", metavar="DURATION", show_default=True,
                 help="close keep-alive connections idle this long (0: never)"),
    click.option("--api-body-timeout", default="1m0s", metavar="DURATION", show_default=True,
                 help="time for a request body, plus its size over --api-body-min-rate; "
                 "a streamed body may pause this long (0: no limit)"),
    click.option("--api-body-min-rate", default="65536", metavar="BYTES", show_default=True,
                 help="bytes per second a request body is given time for"),
    click.option("--api-max-connections", default="2048", metavar="N", show_default=True,
                 help="open API connections; more are closed at once (0: no cap)"),
    click.option("--metrics-addr", "metrics_addr", default="", metavar="HOST:PORT",
                 help="serve Prometheus metrics (/metrics) and the cluster page (/) here "
                 "(default: off)"),
)


def with_manage_flags(command: Any) -> Any:
    """Apply the table to a click command, first row outermost (as stacked decorators)."""
    for flag in reversed(MANAGE_FLAGS):
        command = flag(command)
    return command
