"""The interface every scheduler filter implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from shoal.scheduler.node import Node
from shoal.scheduler.request import Request


class Filter(ABC):
    """Narrows the candidate nodes for one request; stateless, so shareable."""

    name: ClassVar[str]

    @abstractmethod
    def apply(self, req: Request, nodes: Sequence[Node], soft: bool) -> list[Node]:
        """Surviving nodes in input order; FilterError/ExprError when none can fit.

        `soft` is True in the first pass, when soft (`~`) rules are enforced.
        """

    def listing(self, req: Request) -> list[str]:
        """The conditions this filter imposes, for the "following conditions" text."""
        return []
