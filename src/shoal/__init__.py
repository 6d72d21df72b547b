"""shoal: many Docker engines served as one, a drop-in for classic Docker Swarm."""

__version__ = "0.1.0"
