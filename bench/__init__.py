"""Benchmarks: `python -m bench.run [NAME ...]` writes bench/results/NAME.json and BENCHMARKS.md."""
