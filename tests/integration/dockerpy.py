"""docker-py as a test client: of the manager and of each sandbox engine, used from the
session's event loop without blocking it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import docker

from shoal.sandbox import Sandbox

API = "1.41"  # what the sandbox engines (dockerd 20.10) speak
T = TypeVar("T")


async def blocking(call: Callable[[], T]) -> T:
    """docker-py is synchronous: keep it off the event loop the fixtures run on."""
    return await asyncio.to_thread(call)


@contextmanager
def client_of(host: str) -> Iterator[docker.APIClient]:
    with docker.APIClient(base_url=host, version=API, timeout=120) as client:
        yield client


@contextmanager
def engine_clients(sandbox: Sandbox) -> Iterator[list[docker.APIClient]]:
    """Clients of the sandbox's engines themselves, in node order."""
    clients = [docker.APIClient(base_url=n.docker_host, version=API, timeout=120)
               for n in sandbox.nodes]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()
