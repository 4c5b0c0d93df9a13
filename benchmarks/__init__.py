"""Load scenarios, baselines, correctness audit and report; run with ``python -m benchmarks run``."""
