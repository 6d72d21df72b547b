"""Go-syntax regular expressions from clients, matched in linear time.

Docker and classic Swarm match list filters and `/regex/` scheduling rules with Go's
regexp, which is RE2: it never backtracks, so no pattern can make a match slow. Python's
`re` does backtrack (`([0-9a-f]+)+z` against a 64-character ID runs for ever, on the event
loop), so every pattern a client supplies is compiled here, with RE2 itself: same syntax
as Go (`(?i)` anywhere, `\\z`, `$` at end of text, ASCII `\\d\\w\\s`) and the same speed bound.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import re2
from re2 import _re2

# Longest pattern compiled; anything longer is refused like a pattern Go cannot compile.
MAX_PATTERN_LENGTH = 4096
# RE2's budget for one compiled pattern (program and lazily built DFA). A pattern whose
# program does not fit is refused (Go: "expression too large"); a DFA that fills it falls
# back to RE2's NFA, still linear in the text.
MAX_MEMORY = 2 << 20
# Distinct patterns kept compiled (invalid ones included, so they are not re-parsed).
CACHE_SIZE = 256
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


@dataclass(frozen=True, slots=True)
class GoRegex:
    """A compiled pattern; `search` is Go's `MatchString` (unanchored).

    It calls RE2's binding directly: the `re2` module's Python layer builds a match
    object with decoded offsets for every call, twice the cost of the match itself,
    which the scheduler pays once per node.
    """

    pattern: str
    _compiled: Any

    def search(self, text: str) -> bool:
        try:
            data = text.encode()
        except UnicodeEncodeError:
            data = utf8(text)
        start: int = self._compiled.Match(_UNANCHORED, data, 0, len(data))[0][0]
        return start >= 0

    def search_utf8(self, data: bytes) -> bool:
        """`search` over text already encoded (with `utf8`)."""
        start: int = self._compiled.Match(_UNANCHORED, data, 0, len(data))[0][0]
        return start >= 0


def utf8(text: str) -> bytes:
    """UTF-8 bytes, as Go holds strings; a lone surrogate (from a JSON `\\ud800`) is kept
    as invalid bytes, which RE2 matches like any other byte outside a valid rune."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every bad client pattern to stderr
    options.max_mem = MAX_MEMORY
    options.never_capture = True  # only "does it match" is asked: no submatch tracking
    return options


@functools.lru_cache(maxsize=CACHE_SIZE)
def compile_go(pattern: str) -> GoRegex | None:
    """The compiled pattern, or None where Go's `regexp.Compile` would return an error
    (bad syntax, too large) or the pattern is longer than MAX_PATTERN_LENGTH."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return None
    compiled = _re2.RE2(utf8(pattern), _options())
    return GoRegex(pattern, compiled) if compiled.ok() else None


def search(pattern: str, text: str) -> bool | None:
    """Whether PATTERN matches anywhere in TEXT; None if the pattern does not compile."""
    regex = compile_go(pattern)
    return None if regex is None else regex.search(text)
