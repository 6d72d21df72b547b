"""Engines joined to a real `Cluster` without their loops, for unit tests of the logic above
them: one place that knows how an unstarted engine is put into a cluster."""

from __future__ import annotations

from typing import Any

from shoal.cluster.client import EngineAddress, EngineClient
from shoal.cluster.cluster import Cluster
from shoal.cluster.engine import Engine, EngineState
from shoal.cluster.records import EngineSpecs


def adopt_engine(
    cluster: Cluster,
    entry: str,
    specs: EngineSpecs | None,
    *,
    client: Any = None,
    state: EngineState = EngineState.HEALTHY,
    **engine_args: Any,
) -> Engine:
    """An engine at ENTRY with SPECS and STATE (Healthy: as if validated), in CLUSTER.

    CLIENT is a fake engine client; without one, a real client that is never called.
    """
    address = EngineAddress.parse(entry)
    engine = Engine(
        address,
        client if client is not None else EngineClient(address, None),
        engine_args.pop("settings", cluster.settings),
        cluster,
        **engine_args,
    )
    if specs is not None:
        engine.specs = specs
    engine.state = state
    cluster._engines[address.entry] = engine
    return engine
