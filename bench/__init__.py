"""Benchmark harness for sockmapd: load generator, reference servers and the run that compares them.

Run it with ``nox -s bench`` (or ``python -m bench.run``). Nothing here is a test: no
timing is asserted; the run writes docs/performance.json and docs/performance.md.
"""
