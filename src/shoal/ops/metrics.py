"""Every Prometheus collector shoal exports, on a registry of its own.

`Metrics` owns the registry: tests and several managers in one process never share
state, and the counters are handed to the parts that count (API, scheduler, watchdog,
leadership). Cluster state is not counted as it happens but read from a snapshot when
scraped (`ClusterCollector`), so the hot paths pay nothing for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from shoal import __version__
from shoal.ops.snapshot import CONTAINER_STATES, ClusterSnapshot
from shoal.telemetry import MOVE_OUTCOMES

__all__ = ["ClusterCollector", "Metrics"]

#: API latency buckets (seconds): a proxied call is milliseconds, a pull minutes.
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Scheduler latency buckets (seconds): a decision over a thousand nodes stays under 0.1 s.
SCHEDULER_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class ClusterCollector(Collector):
    """Engines, resources and containers, computed from a cluster snapshot at scrape time."""

    def __init__(self, snapshot: Callable[[], ClusterSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from self._totals(snap)
        yield from self._per_engine(snap)

    @staticmethod
    def _totals(snap: ClusterSnapshot) -> Iterator[Metric]:
        yield InfoMetricFamily(
            "shoal", "This manager's version and placement strategy.",
            value={"version": __version__, "strategy": snap.strategy},
        )
        leader = GaugeMetricFamily(
            "shoal_leader", "1 if this manager is the primary (it is without replication)."
        )
        leader.add_metric([], 1 if snap.role == "primary" else 0)
        yield leader

        engines = GaugeMetricFamily("shoal_engines", "Engines by state.", labels=["state"])
        for state, count in snap.engines_by_state().items():
            engines.add_metric([state], count)
        yield engines

        containers = GaugeMetricFamily(
            "shoal_containers", "Containers in the cluster by state, each counted once.",
            labels=["state"],
        )
        for state, count in snap.containers_by_state.items():
            containers.add_metric([state], count)
        yield containers

        listeners = GaugeMetricFamily(
            "shoal_api_event_listeners", "Clients following GET /events."
        )
        listeners.add_metric([], snap.event_listeners)
        yield listeners

    @staticmethod
    def _per_engine(snap: ClusterSnapshot) -> Iterator[Metric]:
        labels = ["node", "addr"]
        engine_state = GaugeMetricFamily(
            "shoal_engine_state", "1 for the engine's current state.", labels=[*labels, "state"]
        )
        cpus = GaugeMetricFamily(
            "shoal_engine_cpus", "CPUs of the engine, overcommit included.", labels=labels
        )
        reserved_cpus = GaugeMetricFamily(
            "shoal_engine_reserved_cpus", "CPUs reserved by the engine's containers.",
            labels=labels,
        )
        memory = GaugeMetricFamily(
            "shoal_engine_memory_bytes", "Memory of the engine, overcommit included.",
            labels=labels,
        )
        reserved_memory = GaugeMetricFamily(
            "shoal_engine_reserved_memory_bytes", "Memory reserved by the engine's containers.",
            labels=labels,
        )
        per_engine = GaugeMetricFamily(
            "shoal_engine_containers", "Containers on the engine by state.",
            labels=[*labels, "state"],
        )
        failures = GaugeMetricFamily(
            "shoal_engine_consecutive_failures",
            "Failed calls to the engine since it last answered (unhealthy at the retry count).",
            labels=labels,
        )
        for node in snap.nodes:
            key = [node.name, node.addr]
            engine_state.add_metric([*key, node.state], 1)
            cpus.add_metric(key, node.cpus)
            reserved_cpus.add_metric(key, node.reserved_cpus)
            memory.add_metric(key, node.memory)
            reserved_memory.add_metric(key, node.reserved_memory)
            failures.add_metric(key, node.failures)
            counts = dict.fromkeys(CONTAINER_STATES, 0)
            for container in node.containers:
                counts[container.state] = counts.get(container.state, 0) + 1
            for state, count in counts.items():
                per_engine.add_metric([*key, state], count)
        yield from (
            engine_state, cpus, reserved_cpus, memory, reserved_memory, per_engine, failures,
        )


class Metrics:
    """The registry and every collector; one per manager, passed to what counts."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._renewed_at: float | None = None
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._api_and_engine_metrics(self.registry)
        self._scheduling_and_leader_metrics(self.registry)
        self.lock_renewal_age.set_function(self._renewal_age)

    def _api_and_engine_metrics(self, r: CollectorRegistry) -> None:
        # API: labelled by route template, never by raw path (bounded label sets).
        self.api_requests = Counter(
            "shoal_api_requests", "API requests by route template, method and status.",
            ["route", "method", "status"], registry=r,
        )
        self.api_latency = Histogram(
            "shoal_api_request_duration_seconds", "API request latency by route template.",
            ["route"], buckets=API_BUCKETS, registry=r,
        )
        self.api_hijacked = Gauge(
            "shoal_api_hijacked_streams", "Open hijacked streams (attach, exec start).",
            registry=r,
        )
        # Engines: per engine, so bounded by the number of nodes.
        self.engine_refresh_failures = Counter(
            "shoal_engine_refresh_failures", "Periodic refreshes of the engine that failed.",
            ["node", "addr"], registry=r,
        )
        self.engine_event_reconnects = Counter(
            "shoal_engine_event_stream_reconnects",
            "Times the engine's event stream broke and was opened again.",
            ["node", "addr"], registry=r,
        )

    def _scheduling_and_leader_metrics(self, r: CollectorRegistry) -> None:
        # Scheduler.
        self.scheduler_decisions = Counter(
            "shoal_scheduler_decisions", "Placement decisions that found a node.", registry=r
        )
        self.scheduler_failures = Counter(
            "shoal_scheduler_failures", "Placement decisions that found no node, by reason.",
            ["reason"], registry=r,
        )
        self.scheduler_latency = Histogram(
            "shoal_scheduler_decision_duration_seconds", "Time to rank the nodes for a create.",
            buckets=SCHEDULER_BUCKETS, registry=r,
        )
        # Watchdog (rescheduling off failed nodes).
        self.watchdog_moves = Counter(
            "shoal_watchdog_moves", "Container moves off failed nodes by outcome.",
            ["outcome"], registry=r,
        )
        for outcome in MOVE_OUTCOMES:
            self.watchdog_moves.labels(outcome)
        self.watchdog_duplicates = Counter(
            "shoal_watchdog_duplicates_removed",
            "Stale copies removed from returning nodes.", registry=r,
        )
        # Leadership (replication); shoal_leader itself is read at scrape time.
        self.elections_won = Counter(
            "shoal_leader_elections_won", "Times this manager became the primary.", registry=r
        )
        self.lock_renewal_age = Gauge(
            "shoal_leader_lock_renewal_age_seconds",
            "Seconds since this manager last renewed the leader lock (NaN if never).",
            registry=r,
        )

    def lock_renewed(self) -> None:
        """Called by the election each time the leader lock is renewed."""
        self._renewed_at = self._clock()

    def _renewal_age(self) -> float:
        if self._renewed_at is None:
            return float("nan")
        return self._clock() - self._renewed_at

    def watch_cluster(self, snapshot: Callable[[], ClusterSnapshot]) -> None:
        """Export cluster state, read from `snapshot` on every scrape."""
        self.registry.register(ClusterCollector(snapshot))

    def render(self) -> bytes:
        """The Prometheus text exposition of every collector."""
        return generate_latest(self.registry)
