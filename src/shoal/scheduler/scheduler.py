"""The scheduling pipeline: filters in order, then the strategy, in two passes (soft
rules first, then without them: scheduler/scheduler.go, `SelectNodesForContainer`)."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from shoal.scheduler.errors import (
    CONDITIONS_PREFIX,
    NO_NODES,
    ExprError,
    FilterError,
    SchedulerError,
)
from shoal.scheduler.filters import DEFAULT_FILTERS, Filter, make_filters
from shoal.scheduler.node import Node
from shoal.scheduler.ranking import KeptRankings
from shoal.scheduler.request import PlacementRequest
from shoal.scheduler.strategies import DEFAULT_STRATEGY, make_strategy
from shoal.telemetry import NO_TELEMETRY, SchedulerTelemetry


class Scheduler:
    """Pure placement logic: no I/O, no locking (the caller serialises decisions).

    Node views passed in must be snapshots (a changed node is a new object): the
    rankings of requests placed by size alone are kept between decisions on that basis
    (with a keyed strategy, for the requests no filter but a node filter concerns).
    """

    def __init__(
        self,
        filters: Sequence[str] = DEFAULT_FILTERS,
        strategy: str = DEFAULT_STRATEGY,
        *,
        rng: random.Random | None = None,
        telemetry: SchedulerTelemetry = NO_TELEMETRY,
        keep_rankings: bool = True,
    ) -> None:
        self._filters: list[Filter] = make_filters(tuple(filters))
        self._strategy = make_strategy(strategy, rng)
        self._telemetry = telemetry
        self._kept: KeptRankings | None = None
        if keep_rankings and self._strategy.keyed:
            self._kept = KeptRankings(self._strategy, self._filters)

    @property
    def filter_names(self) -> list[str]:
        return [f.name for f in self._filters]

    @property
    def strategy_name(self) -> str:
        return self._strategy.name

    def select(
        self, config: Mapping[str, Any], nodes: Sequence[Node], *, limit: int | None = None
    ) -> list[Node]:
        """Nodes that can take `config`, best first, or SchedulerError.

        Pass 1 enforces soft (`~`) rules; on any failure pass 2 ignores them and its
        outcome is final. `limit` keeps only the first nodes of the ranking (a create
        tries one, or a few with retries), which spares ordering the rest. Each call is one
        decision for the telemetry.
        """
        started = time.perf_counter()
        try:
            ranked = self._select_passes(config, nodes, limit)
        except SchedulerError as err:
            self._telemetry.scheduled(time.perf_counter() - started, err.reason)
            raise
        except ExprError:
            self._telemetry.scheduled(time.perf_counter() - started, "bad_expression")
            raise
        self._telemetry.scheduled(time.perf_counter() - started, None)
        return ranked

    def _select_passes(
        self, config: Mapping[str, Any], nodes: Sequence[Node], limit: int | None
    ) -> list[Node]:
        req = PlacementRequest.from_config(config)
        kept = self._kept
        if kept is not None and kept.serves(req):
            ranked = kept.rank(req.cpus, req.memory, nodes, limit)
            if ranked is not None:
                return ranked
        try:
            return self._select(req, nodes, soft=True, limit=limit)
        except SchedulerError:
            if not req.has_soft_rules():
                raise
        return self._select(req, nodes, soft=False, limit=limit)

    def _select(
        self, req: PlacementRequest, nodes: Sequence[Node], soft: bool, limit: int | None
    ) -> list[Node]:
        candidates: Sequence[Node] = nodes
        for i, f in enumerate(self._filters):
            try:
                candidates = f.apply(req, candidates, soft)
            except (FilterError, ExprError) as err:
                if f.name == "health":
                    raise SchedulerError(str(err), filter_name=f.name) from err
                raise SchedulerError(
                    CONDITIONS_PREFIX + self._conditions(req, i), filter_name=f.name
                ) from err
        if not candidates:
            raise SchedulerError(NO_NODES)
        return self._strategy.rank(req, candidates, limit)

    def _conditions(self, req: PlacementRequest, failed: int) -> str:
        """One `\\n[...]` line per filter up to the failed one, in Go's %v slice form."""
        out: list[str] = []
        for f in self._filters[: failed + 1]:
            try:
                items = f.listing(req)
            except ExprError as err:
                out.append(f"\nerror from {f.name} filter: {err}")
                break
            if items:
                out.append("\n[" + " ".join(items) + "]")
        return "".join(out)
