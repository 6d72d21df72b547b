"""Simulated Docker engines: thousands of cheap dockerd look-alikes in one process.

They let a cluster configuration be tried at 1,000 nodes on a laptop, and let tests and
benchmarks check shoal's behaviour at scale without starting real daemons.
"""

from shoal.sandbox.simulated.model import SimEngine, SimError
from shoal.sandbox.simulated.records import EngineSpec, engine_spec
from shoal.sandbox.simulated.server import SimServer

__all__ = ["EngineSpec", "SimEngine", "SimError", "SimServer", "engine_spec"]
