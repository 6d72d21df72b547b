"""Classic Swarm's `key==value` / `key!=value` expressions: parsing and matching."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shoal.scheduler.errors import ExprError
from shoal.textmatch import GoRegex, compile_go, utf8

EQ = "=="
NOTEQ = "!="
OPERATORS = (EQ, NOTEQ)

# Go: ^(?i)[a-z_][a-z0-9\-_.]+$ ; \s in RE2 is [\t\n\f\r ].
_KEY_RE = re.compile(r"[a-z_][a-z0-9\-_.]+", re.IGNORECASE)
_VALUE_RE = re.compile(r"[=!/]?(~)?[a-z0-9:\-_\t\n\f\r .*/()?+\[\]\\^$|]+", re.IGNORECASE)
# Characters that make a glob more than a plain string comparison.
_GLOB_META = frozenset(".*+?()[]\\^$|")
# Constructs after which a pattern may match a newline or needs per-string anchoring,
# so it cannot be run once over the newline-joined candidates.
_UNJOINABLE = frozenset("\\[^$\t\n\f\r\x0b")


class Candidates:
    """A set of strings an expression is matched against, with a joined form for speed."""

    __slots__ = ("_joined", "values")

    def __init__(self, values: Iterable[str]) -> None:
        self.values: frozenset[str] = frozenset(values)
        self._joined: bytes | None = None

    def joined(self) -> bytes | None:
        """All values wrapped in newlines, UTF-8 encoded for the regex engine, or None if
        some value itself holds a newline."""
        if self._joined is None:
            if any("\n" in v for v in self.values):
                return None
            self._joined = utf8("\n" + "\n".join(self.values) + "\n")
        return self._joined


@dataclass(eq=False)
class Expr:
    """One parsed expression; `value` has the soft `~` stripped."""

    key: str
    operator: str
    value: str
    soft: bool = False
    _literal: str | None = field(init=False, repr=False, default=None)
    _regex: GoRegex | None = field(init=False, repr=False, default=None)
    _joined_regex: GoRegex | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        v = self.value
        if len(v) >= 2 and v[0] == "/" and v[-1] == "/":
            body = v[1:-1]
            self._regex = compile_go(body)
            if self._regex is not None and self._joinable(body):
                self._joined_regex = self._regex
        elif v == "/":
            # Go slices v[1:0] and panics; treat it as the empty regex.
            self._regex = compile_go("")
        else:
            glob = v.replace("*", ".*")
            if not (_GLOB_META & set(v)):
                self._literal = v
            # Go logs a pattern that does not compile and treats it as matching nothing.
            self._regex = compile_go("^" + glob + "$")
            if self._regex is not None and self._joinable(glob):
                self._joined_regex = compile_go("\n" + glob + "\n")

    @staticmethod
    def _joinable(body: str) -> bool:
        return "(?" not in body and not (_UNJOINABLE & set(body))

    @property
    def text(self) -> str:
        """`<key><op><value>` as classic Swarm prints it (soft `~` omitted)."""
        return f"{self.key}{self.operator}{self.value}"

    @property
    def listing(self) -> str:
        """`<key><op><value> (soft=<bool>)`, the affinity/whitelist listing form."""
        return f"{self.text} (soft={'true' if self.soft else 'false'})"

    def _found(self, whats: Iterable[str]) -> bool:
        if self._literal is not None:
            return any(w == self._literal for w in whats)
        rx = self._regex
        if rx is None:
            return False
        return any(rx.search(w) for w in whats)

    def _found_in(self, cands: Candidates) -> bool:
        values = cands.values
        if not values:
            return False
        if self._literal is not None:
            return self._literal in values
        if self._regex is None:
            return False
        if self.value in values and self._regex.search(self.value):
            # Common case of a name with "." in it: the value matches itself.
            return True
        if self._joined_regex is not None:
            joined = cands.joined()
            if joined is not None:
                return self._joined_regex.search_utf8(joined)
        return self._found(values)

    def match(self, *whats: str) -> bool:
        """Go's Expr.Match: `==` if any candidate matches, `!=` if none does."""
        found = self._found(whats)
        return found if self.operator == EQ else not found

    def match_candidates(self, cands: Candidates) -> bool:
        """`match` over a precomputed candidate set."""
        found = self._found_in(cands)
        return found if self.operator == EQ else not found


def parse_expr(entry: str) -> Expr:
    """Parse one expression, raising ExprError with classic Swarm's texts."""
    for op in OPERATORS:
        if op in entry:
            key, value = entry.split(op, 1)
            if _KEY_RE.fullmatch(key) is None:
                raise ExprError(f"Key '{key}' is invalid")
            if _VALUE_RE.fullmatch(value) is None:
                raise ExprError(f"Value '{value}' is invalid")
            soft = value.startswith("~")
            return Expr(key=key, operator=op, value=value.lstrip("~"), soft=soft)
    raise ExprError("One of operator ==, != is expected")


def parse_exprs(entries: Sequence[str]) -> list[Expr]:
    """Parse a list of expressions; the first bad one aborts with its error."""
    return [parse_expr(e) for e in entries]
