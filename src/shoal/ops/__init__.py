"""Operating shoal: Prometheus metrics and the live cluster page on ``--metrics-addr``."""
