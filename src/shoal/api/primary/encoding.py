"""JSON to bytes for the large read answers: orjson, with the standard encoder for the
few values orjson refuses (integers past 64 bits)."""

from __future__ import annotations

import json
from typing import Any

import orjson

_fallback = json.JSONEncoder(separators=(",", ":")).encode


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:
        return _fallback(obj).encode()
