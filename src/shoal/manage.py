"""`shoal manage`: wires discovery, engines, scheduler and the API server together.

This is the one place that builds the object graph; every other module is given
what it needs. Shutdown runs in reverse order of start-up on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
import sys
from collections.abc import Iterator

import uvloop

from shoal.api.dispatcher import Dispatcher
from shoal.api.http import BodyPace
from shoal.api.primary import PrimaryHandler
from shoal.api.primary.context import ApiContext
from shoal.api.replica import ReplicaHandler, WithDebug
from shoal.api.server import (
    APIServer,
    ServerLimits,
    make_client_ssl_context,
    make_server_ssl_context,
)
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import EngineSettings
from shoal.cluster.events import EventBus
from shoal.cluster.watchdog import Watchdog
from shoal.discovery.base import Discovery, DiscoveryError
from shoal.discovery.kv import KVDiscovery
from shoal.discovery.url import parse_discovery
from shoal.leadership.component import Leadership
from shoal.leadership.election import Election
from shoal.malloc import pin_mmap_threshold
from shoal.ops.metrics import Metrics
from shoal.ops.server import OpsServer
from shoal.ops.snapshot import ClusterReader, SnapshotCache
from shoal.ops.telemetry import PrometheusTelemetry
from shoal.options import ManageOptions
from shoal.scheduler.scheduler import Scheduler
from shoal.telemetry import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)

#: The longest the cyclic garbage collector stays off while the first adoption runs.
ADOPTION_GC_PAUSE = 300.0


class StartupError(Exception):
    """A fatal problem found before serving: printed as one line, exit 1."""


async def serve(options: ManageOptions, ready: asyncio.Event | None = None) -> None:
    """Run the manager until SIGINT/SIGTERM (or until cancelled)."""
    server_ssl, client_ssl = _tls_contexts(options)
    try:
        discovery = parse_discovery(
            options.discovery, options.heartbeat, 0.0, options.discovery_opts
        )
    except (DiscoveryError, ValueError) as exc:
        raise StartupError(str(exc)) from None
    metrics = Metrics()  # one registry per manager, counted into through `telemetry`
    telemetry = NO_TELEMETRY if options.metrics_addr is None else PrometheusTelemetry(metrics)
    cluster = _cluster(options, client_ssl, telemetry)
    scheduler = cluster.scheduler
    watchdog = Watchdog(cluster, telemetry=telemetry)
    ctx = ApiContext(
        cluster,
        strategy=scheduler.strategy_name,
        filters=list(scheduler.filter_names),
        experimental=options.experimental,
    )
    dispatcher = Dispatcher(PrimaryHandler(ctx, telemetry), cors=options.cors)
    election = None
    if options.replication:
        election = _replication(
            options, discovery, ctx, dispatcher, watchdog, client_ssl, telemetry
        )
    server = _api_server(options, dispatcher, server_ssl, ctx)
    ops = _ops_server(options, metrics, cluster, ctx)
    stop = asyncio.Event()
    with _set_on_signals(stop):
        try:
            try:
                await server.start()
                if ops is not None:
                    await ops.start()
            except (OSError, ValueError) as exc:
                raise StartupError(str(exc)) from None
            cluster.watch(discovery)
            if election is not None:
                election.start()  # the watchdog then runs while this manager is the primary
            else:
                watchdog.start()
            if ready is not None:
                ready.set()
            settle = asyncio.create_task(_collect_after_adoption(cluster))
            try:
                await stop.wait()
            finally:
                settle.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await settle
            log.info("shutting down")
        finally:
            if election is not None:
                await election.stop()
            if ops is not None:
                await ops.close()
            await server.close()
            await watchdog.stop()
            await cluster.close()
            await discovery.close()


async def _collect_after_adoption(cluster: Cluster, longest: float = ADOPTION_GC_PAUSE) -> None:
    """The first adoption builds hundreds of thousands of long-lived, acyclic records, and
    that growth kept triggering the cyclic collector, which rescanned all of them each
    time: 58% of the adoption's CPU at 2,000 engines. So automatic collection is off until
    the adoption settles (every container inspected, LONGEST seconds at most); then one
    collection, and what was built is frozen out of the collector's sight (refcounting
    still frees it), so later full collections never walk it either. The scheduler's node
    views are built first, so the first create does not build all of them (130 ms at
    5,000 engines) and they are frozen too."""
    gc.disable()
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(longest):
                await cluster.adoption_settled()
        cluster.node_views()
    finally:
        gc.collect()
        gc.freeze()
        gc.enable()


@contextlib.contextmanager
def _set_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` while the manager runs, then go back to the default."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _api_server(
    options: ManageOptions,
    dispatcher: Dispatcher,
    server_ssl: ssl.SSLContext | None,
    ctx: ApiContext,
) -> APIServer:
    limits = ServerLimits(
        head_timeout=options.api_head_timeout,
        idle_timeout=options.api_idle_timeout,
        body=BodyPace(options.api_body_timeout, float(options.api_body_min_rate)),
        max_connections=options.api_max_connections,
    )
    return APIServer(
        dispatcher,
        list(options.hosts),
        server_ssl,
        limits,
        versions=lambda: (ctx.min_api_version(), ctx.api_version()),
    )


def _ops_server(
    options: ManageOptions, metrics: Metrics, cluster: Cluster, ctx: ApiContext
) -> OpsServer | None:
    """The metrics and cluster-page listener, when `--metrics-addr` asks for one."""
    if options.metrics_addr is None:
        return None
    self_addr = options.advertise or options.hosts[0]
    snapshots = SnapshotCache(ClusterReader(cluster, ctx.strategy, lambda: ctx.role(), self_addr))
    metrics.watch_cluster(snapshots.latest)
    return OpsServer(metrics, snapshots, *options.metrics_addr)


def _tls_contexts(
    options: ManageOptions,
) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The server's and the engine client's TLS contexts, when `--tls` options were given."""
    if options.tls is None:
        return None, None
    tls = options.tls
    try:
        return (
            make_server_ssl_context(tls.cert, tls.key, tls.ca, tls.verify),
            make_client_ssl_context(tls.cert, tls.key, tls.ca, tls.verify),
        )
    except (OSError, ValueError) as exc:
        raise StartupError(str(exc)) from None


def _cluster(
    options: ManageOptions, client_ssl: ssl.SSLContext | None, telemetry: Telemetry
) -> Cluster:
    try:
        scheduler = Scheduler(list(options.filters), options.strategy, telemetry=telemetry)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    settings = EngineSettings(
        refresh_min=options.refresh_min,
        refresh_max=options.refresh_max,
        failure_retry=options.failure_retry,
        overcommit=options.overcommit,
        probe_timeout=options.engine_probe_timeout,
        telemetry=telemetry,
    )
    return Cluster(
        settings, scheduler, EventBus(), ssl_context=client_ssl, create_retry=options.create_retry
    )


def _replication(
    options: ManageOptions,
    discovery: Discovery,
    ctx: ApiContext,
    dispatcher: Dispatcher,
    watchdog: Watchdog,
    client_ssl: ssl.SSLContext | None,
    telemetry: Telemetry,
) -> Election:
    """Wire leader election: the replica handler until this manager holds the lock."""
    if not isinstance(discovery, KVDiscovery) or not options.advertise:
        raise StartupError(
            "Leader election is only supported with consul, etcd and zookeeper discovery."
        )
    lock = discovery.leader_lock(options.advertise, options.replication_ttl)
    leadership: Leadership | None = None

    async def changed(leader: bool) -> None:
        assert leadership is not None
        await leadership.changed(leader)

    election = Election(
        lock, options.advertise, changed, retry=options.heartbeat, telemetry=telemetry
    )
    ctx.role = election.role
    local = WithDebug(dispatcher.handler or PrimaryHandler(ctx, telemetry), election.snapshot)
    replica = WithDebug(ReplicaHandler(local, election, client_ssl), election.snapshot)
    leadership = Leadership(dispatcher, local, replica, watchdog)
    dispatcher.set_handler(replica)
    return election


def run(options: ManageOptions) -> int:
    """Entry point of `shoal manage`: runs the event loop on uvloop, returns the exit code."""
    pin_mmap_threshold()
    try:
        uvloop.run(serve(options))
    except StartupError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
