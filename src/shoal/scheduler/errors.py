"""Scheduler error types and classic Swarm's exact error texts."""

from __future__ import annotations

NO_HEALTHY_NODE = "No healthy node available in the cluster"
NO_NODES = "No nodes available in the cluster"
NO_RESOURCES = "no resources available to schedule container"
NO_SLOTS = "No node with enough open slots available in the cluster"
CONDITIONS_PREFIX = "Unable to find a node that satisfies the following conditions "
FILTER_NOT_SUPPORTED = "filter not supported"
STRATEGY_NOT_SUPPORTED = "strategy not supported"


class SchedulerError(Exception):
    """No node can take the container; str(err) is the client-facing message."""

    def __init__(self, message: str, *, filter_name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Which filter (if any) emptied the candidate list, for logs.
        self.filter_name = filter_name

    @property
    def reason(self) -> str:
        """A short, bounded name for why no node fit (a metrics label)."""
        if self.filter_name:
            return self.filter_name
        return _REASONS.get(self.message, "other")


_REASONS = {
    NO_HEALTHY_NODE: "no_healthy_node",
    NO_NODES: "no_nodes",
    NO_RESOURCES: "resources",
}


class FilterError(Exception):
    """A filter left no node; the scheduler wraps it into the conditions text."""


class ExprError(ValueError):
    """A constraint/affinity/whitelist expression does not parse."""
