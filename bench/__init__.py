"""Benchmarks of issue 2 and later issues: run them all with `python -m bench` (`make bench`)."""
