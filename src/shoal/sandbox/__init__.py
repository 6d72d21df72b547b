"""Sandbox of real dockerd engines, each in its own namespaces, for tests and local play."""

from shoal.sandbox.cluster import Sandbox
from shoal.sandbox.node import SandboxNode
from shoal.sandbox.procs import SandboxError

__all__ = ["Sandbox", "SandboxError", "SandboxNode"]
