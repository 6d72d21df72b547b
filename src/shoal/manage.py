"""`shoal manage`: wires discovery, engines, scheduler and the API server together.

This is the one place that builds the object graph; every other module is given
what it needs. Shutdown runs in reverse order of start-up on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import uvloop

from shoal.api.dispatcher import Dispatcher
from shoal.api.primary import PrimaryHandler
from shoal.api.primary.context import ApiContext
from shoal.api.server import APIServer, make_client_ssl_context, make_server_ssl_context
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import EngineSettings
from shoal.cluster.events import EventBus
from shoal.discovery.base import DiscoveryError
from shoal.discovery.url import parse_discovery
from shoal.options import ManageOptions
from shoal.scheduler.scheduler import Scheduler

log = logging.getLogger("shoal.manage")


class StartupError(Exception):
    """A fatal problem found before serving: printed as one line, exit 1."""


async def serve(options: ManageOptions, ready: asyncio.Event | None = None) -> None:
    """Run the manager until SIGINT/SIGTERM (or until cancelled)."""
    server_ssl = client_ssl = None
    if options.tls is not None:
        tls = options.tls
        try:
            server_ssl = make_server_ssl_context(tls.cert, tls.key, tls.ca, tls.verify)
            client_ssl = make_client_ssl_context(tls.cert, tls.key, tls.ca, tls.verify)
        except (OSError, ValueError) as exc:
            raise StartupError(str(exc)) from None
    try:
        discovery = parse_discovery(
            options.discovery, options.heartbeat, 0.0, options.discovery_opts
        )
    except (DiscoveryError, ValueError) as exc:
        raise StartupError(str(exc)) from None
    try:
        scheduler = Scheduler(list(options.filters), options.strategy)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    settings = EngineSettings(
        refresh_min=options.refresh_min,
        refresh_max=options.refresh_max,
        failure_retry=options.failure_retry,
        overcommit=options.overcommit,
    )
    cluster = Cluster(
        settings, scheduler, EventBus(), ssl_context=client_ssl, create_retry=options.create_retry
    )
    ctx = ApiContext(
        cluster,
        strategy=scheduler.strategy_name,
        filters=list(scheduler.filter_names),
        experimental=options.experimental,
    )
    dispatcher = Dispatcher(PrimaryHandler(ctx), cors=options.cors)
    server = APIServer(dispatcher, list(options.hosts), server_ssl)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await server.start()
        except (OSError, ValueError) as exc:
            raise StartupError(str(exc)) from None
        cluster.watch(discovery)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.close()
        await cluster.close()
        await discovery.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def run(options: ManageOptions) -> int:
    """Entry point of `shoal manage`: runs the event loop on uvloop, returns the exit code."""
    try:
        uvloop.run(serve(options))
    except StartupError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
