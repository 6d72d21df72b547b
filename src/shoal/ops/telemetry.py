"""`Telemetry` onto the Prometheus collectors of `Metrics`.

The API calls `api_request` once per request, so its labelled children are looked up
once per (route, method, status) and kept: the request path pays a dict lookup, a
counter increment and a histogram observation, a few microseconds.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shoal.ops.metrics import Metrics

__all__ = ["PrometheusTelemetry"]


class PrometheusTelemetry:
    """Counts into one manager's `Metrics`; implements `shoal.telemetry.Telemetry`."""

    __slots__ = ("_latency", "_metrics", "_requests")

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._latency: dict[str, Histogram] = {}

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._metrics.api_requests.labels(route, method, str(status))
            self._requests[key] = counter
        counter.inc()
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = self._metrics.api_latency.labels(route)
        latency.observe(seconds)

    def api_hijack(self, delta: int) -> None:
        self._metrics.api_hijacked.inc(delta)

    def scheduled(self, seconds: float, failure: str | None) -> None:
        self._metrics.scheduler_latency.observe(seconds)
        if failure is None:
            self._metrics.scheduler_decisions.inc()
        else:
            self._metrics.scheduler_failures.labels(failure).inc()

    def engine_refresh_failed(self, node: str, addr: str) -> None:
        self._metrics.engine_refresh_failures.labels(node, addr).inc()

    def engine_events_reconnect(self, node: str, addr: str) -> None:
        self._metrics.engine_event_reconnects.labels(node, addr).inc()

    def duplicate_removed(self) -> None:
        self._metrics.watchdog_duplicates.inc()

    def watchdog_move(self, outcome: str, count: int = 1) -> None:
        self._metrics.watchdog_moves.labels(outcome).inc(count)

    def election_won(self) -> None:
        self._metrics.elections_won.inc()

    def lock_renewed(self) -> None:
        self._metrics.lock_renewed()
