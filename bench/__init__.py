"""Benchmarks (not tests). `python -m bench <name>` prints one JSON object on stdout."""
