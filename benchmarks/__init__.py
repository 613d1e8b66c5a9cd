"""Benchmark layer (``s2s.bench``): perf_analyzer runs against the served models, with reports."""
