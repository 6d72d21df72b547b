"""Events read together come out together, and a container destroyed later in the batch is
known before its earlier events are handled (their inspects would only delay the removal)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from shoal.cluster.client import json_batches, json_objects
from shoal.cluster.engine_events import destroyed_later


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def event(action: str, cid: str, kind: str = "container") -> dict[str, object]:
    return {"Type": kind, "Action": action, "Actor": {"ID": cid}}


async def test_a_batch_per_chunk_with_fragments_carried_over() -> None:
    got = [b async for b in json_batches(chunks(
        b'{"Action":"create","id":"a"}\n{"Action":"start","id":"a"}\n{"Act',
        b'ion":"die","id":"a"}\n',
        b'{"Action":"destroy"',
    ))]  # fmt: skip
    assert got[:2] == [
        [{"Action": "create", "id": "a"}, {"Action": "start", "id": "a"}],
        [{"Action": "die", "id": "a"}],
    ]
    assert got[2:] == [[{"stream": '{"Action":"destroy"'}]]


async def test_objects_are_the_batches_flattened() -> None:
    data = b'{"a":1}{"b":2}\n[3]\n{"c":3}'
    flat = [o async for o in json_objects(chunks(data[:9], data[9:]))]
    assert flat == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_destroyed_later_names_container_destroys_only() -> None:
    batch = [
        event("create", "a"), event("start", "a"), event("die", "b"),
        event("destroy", "a"), event("destroy", "img", kind="image"), event("start", "c"),
    ]  # fmt: skip
    assert destroyed_later(batch) == {"a": 3}
    assert destroyed_later([event("die", "a")]) == {}
