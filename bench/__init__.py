"""Benchmarks of layers-readiness on loopback: `python -m bench` (or `make bench`).

Each suite writes raw figures as JSON under bench/out/; `bench.report` turns them into
bench/RESULTS.md and the figures' PNG. See RESULTS.md for what each one measures and why.
"""
