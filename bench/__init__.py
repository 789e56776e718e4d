"""warnd's benchmark suite: ``python -m bench.run`` (docs/performance.md)."""
