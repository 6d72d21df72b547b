"""Request bodies decoded and type-checked the way dockerd's Go decoder does it.

Why: shoal reads fields of the bodies it schedules with (container create and update, exec,
network and volume create) before any engine sees them, and Python's `json` is laxer than
Go's `encoding/json` (it takes NaN, UTF-16, and any JSON type in any field). A body the
engine would refuse must be refused here, with the engine's own message, and never reach
code that assumes a field's type. The answer is 400, as current engines give for a body
that does not decode (dockerd 20.10 still answers 500 for some).

Go's rules mirrored: object keys match fields case-insensitively, unknown fields are
ignored, `null` fits any field, numbers must parse as the field's exact Go type (`1.0` and
`1e3` are not an int64), the first type error in document order wins unless a custom
decoder (`strslice.StrSlice`) fails, which aborts at once; trailing data after the value
is ignored (`json.Decoder`), and syntax errors use Go's scanner wording. The Go types
checked against are tables in gotypes.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from shoal.api.gotypes import (
    CONTAINER_CONFIG,
    CONTAINER_UPDATE,
    EXEC_CONFIG,
    NETWORK_CREATE,
    STRING,
    STRING_MAP,
    VOLUME_CREATE,
    GoType,
    map_of,
)
from shoal.api.http import HTTPError, Request

MAX_DEPTH: Final = 10000
"""Go's decoder nesting limit."""


class BodyError(HTTPError):
    """A request body the engine would refuse: 400 with the engine's message."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class GoFloat(float):
    """A JSON number that is not an integer literal, with its literal kept for messages."""

    literal: str

    def __new__(cls, literal: str) -> GoFloat:
        self = super().__new__(cls, float(literal))
        self.literal = literal
        return self


# --- type checking ----------------------------------------------------------------------


class _Abort(Exception):
    """A custom Go decoder failed: decoding stops with this message."""


def _json_kind(value: object) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def _literal(value: int | float) -> str:
    return value.literal if isinstance(value, GoFloat) else repr(value)


def _number_fits(value: int | float, t: GoType) -> bool:
    if t.kind == "float":
        return value not in (float("inf"), float("-inf"))
    if isinstance(value, float):  # any fraction or exponent: ParseInt refuses it
        return False
    if t.kind == "int":
        return -(1 << (t.bits - 1)) <= value < (1 << (t.bits - 1))
    return 0 <= value < (1 << t.bits)


def _type_error(value: object, t: GoType, context: tuple[str, str] | None) -> str:
    kind = _json_kind(value)
    if kind == "number" and t.kind in ("int", "uint", "float"):
        kind = f"number {_literal(value)}"  # type: ignore[arg-type]
    if context is None:
        return f"json: cannot unmarshal {kind} into Go value of type {t.name}"
    owner, path = context
    return f"json: cannot unmarshal {kind} into Go struct field {owner}.{path} of type {t.name}"


@dataclass(slots=True)
class _Checker:
    """Walks a decoded body against a GoType, keeping Go's first error."""

    first: str | None = None

    def fail(self, value: object, t: GoType, context: tuple[str, str] | None) -> None:
        if self.first is None:
            self.first = _type_error(value, t, context)

    def check(self, value: object, t: GoType, context: tuple[str, str] | None) -> object:
        """Check `value`; returns it, with string-list and string-map nulls made "" as Go
        decodes them (so later code sees only strings)."""
        if value is None or t.kind == "any":
            return value
        kind = t.kind
        if kind == "string":
            if not isinstance(value, str):
                self.fail(value, t, context)
        elif kind == "bool":
            if not isinstance(value, bool):
                self.fail(value, t, context)
        elif kind in ("int", "uint", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(value, t, context)
            elif not _number_fits(value, t):
                self.fail(value, t, context)
        elif kind == "strslice":
            if isinstance(value, list):
                if not all(v is None or isinstance(v, str) for v in value):
                    raise _Abort(_type_error(value, STRING, context))
                return ["" if v is None else v for v in value]
            if not isinstance(value, str):
                raise _Abort(_type_error(value, STRING, context))
        elif kind in ("slice", "array"):
            if not isinstance(value, list):
                self.fail(value, t, context)
                return value
            assert t.elem is not None
            return self._items(value, t.elem, context)
        elif kind == "map":
            if not isinstance(value, dict):
                self.fail(value, t, context)
                return value
            assert t.elem is not None
            for key, item in value.items():
                checked = self.check(item, t.elem, context)
                if checked is None and t.elem.kind == "string" and not t.elem.pointer:
                    checked = ""
                value[key] = checked
        elif kind == "struct":
            if not isinstance(value, dict):
                self.fail(value, t, context)
                return value
            self._struct(value, t, context)
        return value

    def _items(self, items: list[Any], elem: GoType, context: tuple[str, str] | None) -> list[Any]:
        for i, item in enumerate(items):
            checked = self.check(item, elem, context)
            if checked is None and elem.kind == "string":
                checked = ""
            items[i] = checked
        return items

    def _struct(self, value: dict[str, Any], t: GoType, context: tuple[str, str] | None) -> None:
        folded = {k.lower(): (k, ft) for k, ft in t.fields.items()}
        prefix = f"{context[1]}." if context is not None else ""
        for key in list(value):
            found = t.fields.get(key)
            name = key
            if found is None:
                name, found = folded.get(key.lower(), (key, None))
            if found is None:
                continue  # Go ignores unknown fields
            value[key] = self.check(value[key], found, (t.short, prefix + name))


def check_types(body: object, t: GoType) -> None:
    """Raise BodyError with Go's message when `body` does not decode into `t`."""
    checker = _Checker()
    try:
        checker.check(body, t, None)
    except _Abort as exc:
        raise BodyError(str(exc)) from None
    if checker.first is not None:
        raise BodyError(checker.first)


# --- decoding ---------------------------------------------------------------------------


class _Constant(Exception):
    """NaN or Infinity in the body: valid for Python's json, not for Go's."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _refuse_constant(name: str) -> Any:
    raise _Constant(name)


def _parse_int(literal: str) -> int | GoFloat:
    # Python refuses to convert integers of more than 4,300 digits (either way); no Go
    # integer holds one, and its message needs only the literal.
    return int(literal) if len(literal) < 4000 else GoFloat(literal)


_DECODER: Final = json.JSONDecoder(
    parse_float=GoFloat, parse_int=_parse_int, parse_constant=_refuse_constant
)
_WS: Final = " \t\r\n"
_STRINGS_RE: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS_RE: Final = re.compile(r"[^\[\]{}]+")
_UNDECODED_RE: Final = re.compile("[\udc80-\udcff]")
_C_ESCAPES: Final = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                     "\t": "\\t", "\v": "\\v"}


def quote_char(c: str) -> str:
    """Go's `quoteChar` of the byte the scanner stopped at."""
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
        c = chr(code - 0xDC00)
    elif code > 0x7F:
        c = chr(c.encode("utf-8", "surrogatepass")[0])  # Go reports the first byte
    if c == "'":
        return "'\\''"
    if c in _C_ESCAPES:
        return f"'{_C_ESCAPES[c]}'"
    if c.isprintable():
        return f"'{c}'"
    code = ord(c)
    return f"'\\x{code:02x}'" if code < 0x80 else f"'\\u{code:04x}'"


def _innermost(text: str, pos: int) -> str:
    """`[` or `{`: the container still open at `pos` (strings taken out first)."""
    brackets = _NOT_BRACKETS_RE.sub("", _STRINGS_RE.sub("", text[:pos]))
    closed = 0
    for c in reversed(brackets):
        if c in "]}":
            closed += 1
        elif closed:
            closed -= 1
        else:
            return c
    return ""


def _literal_error(text: str, pos: int) -> str | None:
    for word in ("true", "false", "null"):
        if text[pos] == word[0]:
            for i, expected in enumerate(word):
                if pos + i >= len(text):
                    return "unexpected EOF"
                if text[pos + i] != expected:
                    got = quote_char(text[pos + i])
                    return f"invalid character {got} in literal {word} (expecting '{expected}')"
    return None


def syntax_message(text: str, exc: json.JSONDecodeError) -> str:
    """Go's scanner message for the place where Python's decoder stopped."""
    pos, msg = exc.pos, exc.msg
    if pos >= len(text) or msg.startswith("Unterminated string"):
        return "unexpected EOF"
    c = text[pos]
    if msg.startswith("Expecting value"):
        if c == "-":
            if pos + 1 >= len(text):
                return "unexpected EOF"
            return f"invalid character {quote_char(text[pos + 1])} in numeric literal"
        return _literal_error(text, pos) or (
            f"invalid character {quote_char(c)} looking for beginning of value"
        )
    if msg.startswith("Expecting property name"):
        return f"invalid character {quote_char(c)} looking for beginning of object key string"
    if msg.startswith("Expecting ':'"):
        return f"invalid character {quote_char(c)} after object key"
    if msg.startswith("Expecting ','"):
        prev = text[pos - 1] if pos else ""
        if prev.isdigit() and c == ".":
            nxt = text[pos + 1] if pos + 1 < len(text) else ""
            if not nxt:
                return "unexpected EOF"
            return f"invalid character {quote_char(nxt)} after decimal point in numeric literal"
        if prev.isdigit() and c in "eE":
            nxt = text[pos + 1 : pos + 2].lstrip("+-") or text[pos + 2 : pos + 3]
            if pos + 1 >= len(text) or not nxt:
                return "unexpected EOF"
            return f"invalid character {quote_char(nxt)} in exponent of numeric literal"
        where = "array element" if _innermost(text, pos) == "[" else "object key:value pair"
        return f"invalid character {quote_char(c)} after {where}"
    if msg.startswith("Invalid control character"):
        return f"invalid character {quote_char(c)} in string literal"
    if msg.startswith("Invalid \\uXXXX"):
        digits = text[pos + 2 : pos + 6]
        for d in digits:
            if d not in "0123456789abcdefABCDEF":
                return f"invalid character {quote_char(d)} in \\u hexadecimal character escape"
        return "unexpected EOF"
    if msg.startswith("Invalid \\escape"):
        if pos + 1 >= len(text):
            return "unexpected EOF"
        return f"invalid character {quote_char(text[pos + 1])} in string escape code"
    return f"invalid character {quote_char(c)} looking for beginning of value"


def decode(raw: bytes, eof_message: str = "EOF") -> Any:
    """The first JSON value of `raw` as Go's `json.Decoder` reads it; BodyError otherwise.

    An empty (or all-whitespace) body is `eof_message`: "EOF", or the "got EOF while reading
    request body" that some of dockerd's routes say instead.
    """
    text = raw.decode("utf-8", "surrogateescape")
    start = 0
    while start < len(text) and text[start] in _WS:
        start += 1
    if start == len(text):
        raise BodyError(eof_message)
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise BodyError(syntax_message(text, exc)) from None
    except _Constant as exc:
        if exc.name == "-Infinity":
            raise BodyError("invalid character 'I' in numeric literal") from None
        raise BodyError(
            f"invalid character '{exc.name[0]}' looking for beginning of value"
        ) from None
    except RecursionError:
        # Deeper than Python's decoder goes (Go's limit is MAX_DEPTH; the HTTP edge refuses
        # deeper bodies before they get here): Go's wording, with the opening bracket.
        bare = _STRINGS_RE.sub("", text)
        opener = quote_char("[" if bare.count("[") >= bare.count("{") else "{")
        raise BodyError(f"invalid character {opener} exceeded max depth") from None
    if not text.isascii() and _UNDECODED_RE.search(text):
        # Go keeps invalid UTF-8 inside strings as U+FFFD.
        value, _ = _DECODER.raw_decode(raw.decode("utf-8", "replace"), start)
    return value


# --- Content-Type -----------------------------------------------------------------------

_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_RE: Final = re.compile(
    rf"""\s*({_TOKEN}/{_TOKEN})\s*"""
    rf"""(?:;\s*{_TOKEN}\s*=\s*(?:{_TOKEN}|"(?:[^"\\]|\\.)*")\s*)*"""
    r"""(?:;\s*)?"""
)


def media_type(content_type: str) -> str | None:
    """The media type of a Content-Type, or None where Go's `mime.ParseMediaType` fails
    (a trailing semicolon is allowed, an empty or malformed parameter is not)."""
    match = _MEDIA_RE.fullmatch(content_type)
    return match.group(1).lower() if match else None


def check_content_type(content_type: str | None, has_body: bool) -> None:
    """dockerd's `CheckForJSON`: no Content-Type only without a body, else application/json."""
    ct = content_type or ""
    if not ct and not has_body:
        return
    if media_type(ct) != "application/json":
        raise BodyError(f"Content-Type specified ({ct}) must be 'application/json'")


# --- per route --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BodyKind:
    """How one route's body is read: its Go type, what an empty body says, what null is."""

    go_type: GoType
    eof_message: str = "EOF"
    null_message: str | None = None
    """The error for a `null` body, or None when null reads as an empty object."""


CONTAINER_CREATE: Final = BodyKind(
    CONTAINER_CONFIG, null_message="Config cannot be empty in order to create a container"
)
CONTAINER_UPDATE_BODY: Final = BodyKind(CONTAINER_UPDATE)
EXEC_CREATE: Final = BodyKind(EXEC_CONFIG, "got EOF while reading request body")
NETWORK_CREATE_BODY: Final = BodyKind(NETWORK_CREATE, "got EOF while reading request body")
VOLUME_CREATE_BODY: Final = BodyKind(VOLUME_CREATE, "got EOF while reading request body")


def parse_body(
    kind: BodyKind, raw: bytes, content_type: str | None, has_body: bool
) -> dict[str, Any]:
    """The body of a JSON route, decoded and type-checked as dockerd does; BodyError if not.

    A `null` body is an empty object, except where the engine refuses it.
    """
    check_content_type(content_type, has_body)
    value = decode(raw, kind.eof_message)
    if value is None:
        if kind.null_message is not None:
            raise BodyError(kind.null_message)
        return {}
    check_types(value, kind.go_type)
    assert isinstance(value, dict)
    return value


# --- build options in the query ------------------------------------------------------

BUILD_QUERY_OBJECTS: Final[Mapping[str, tuple[GoType, str]]] = {
    "buildargs": (map_of(GoType("string", "string", pointer=True), "map[string]*string"),
                  "build args"),
    "labels": (STRING_MAP, "labels"),
}
_GO_INT_RE: Final = re.compile(r"[+-]?[0-9]+")


def build_query_object(name: str, raw: str | None) -> dict[str, Any]:
    """A JSON-object build option (`buildargs`, `labels`) as dockerd reads it: absent,
    empty or null is {}; anything else must decode into its Go map."""
    if not raw:
        return {}
    go_type, what = BUILD_QUERY_OBJECTS[name]
    try:
        value = decode(raw.encode("utf-8", "surrogateescape"))
        if value is None:
            return {}
        check_types(value, go_type)
    except BodyError as exc:
        raise BodyError(f"error reading {what}: {exc.message}") from None
    assert isinstance(value, dict)
    return value


def int64_or_zero(raw: str | None) -> int:
    """dockerd's `Int64ValueOrZero` for build options (`cpushares`, `memory`): a value that
    is not a base-10 int64 counts as 0, as on the engine."""
    if not raw or not _GO_INT_RE.fullmatch(raw):
        return 0
    value = int(raw)
    return value if -(1 << 63) <= value < (1 << 63) else 0


def request_has_body(request: Request) -> bool:
    """Go's view: a body unless Content-Length is absent or 0 and it is not chunked."""
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        return True
    return request.headers.get("Content-Length", "0").strip() not in ("", "0")


async def read_body(request: Request, kind: BodyKind) -> dict[str, Any]:
    """`parse_body` of a request's body: the one call a JSON route makes to get its body."""
    has_body = request_has_body(request)
    check_content_type(request.headers.get("Content-Type"), has_body)
    return parse_body(kind, await request.body(), request.headers.get("Content-Type"), has_body)
