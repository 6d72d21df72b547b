"""The interfaces every scheduler filter implements.

The kept rankings (ranking.py) place a request without running the filters, so each
filter tells them what it would do: whether a request concerns it (`Filter.concerns`),
or that its rule looks at each node alone (`NodeFilter.accepted`), for them to apply.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, final

from shoal.scheduler.errors import FilterError
from shoal.scheduler.node import Node
from shoal.scheduler.request import PlacementRequest


class Filter(ABC):
    """Narrows the candidate nodes for one request; stateless, so shareable."""

    name: ClassVar[str]

    @abstractmethod
    def apply(self, req: PlacementRequest, nodes: Sequence[Node], soft: bool) -> list[Node]:
        """Surviving nodes in input order; FilterError/ExprError when none can fit.

        `soft` is True in the first pass, when soft (`~`) rules are enforced.
        """

    def concerns(self, req: PlacementRequest) -> bool:
        """Whether `apply` could drop a node for `req` (False: it keeps every node).

        The kept rankings serve a request only when no filter concerns it (node filters
        aside), so True is the safe default: a filter that does not say otherwise makes
        them step aside for the full pipeline rather than be skipped.
        """
        return True

    def listing(self, req: PlacementRequest) -> list[str]:
        """The conditions this filter imposes, for the "following conditions" text."""
        return []


class NodeFilter(Filter):
    """A rule on each node alone, whatever the request asks (health, container slots).

    `accepted` states the rule once: `apply` is it plus the error, and the kept rankings
    call it on the nodes they key (all, or only the changed ones: a node's fate does
    not depend on the others), so the fast path cannot drift from the pipeline.
    """

    #: The FilterError text when no node is accepted.
    rejected: ClassVar[str]

    @abstractmethod
    def accepted(self, nodes: Sequence[Node]) -> list[Node]:
        """The very node objects the rule lets through, in input order, each judged
        alone. Over whole lists, so that no node costs a call."""

    @final
    def apply(self, req: PlacementRequest, nodes: Sequence[Node], soft: bool) -> list[Node]:
        result = self.accepted(nodes)
        if not result:
            raise FilterError(self.rejected)
        return result
