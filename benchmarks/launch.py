"""Run a module as ``__main__`` with another GIL switch interval (``--switch-interval``).

Usage: ``python -m benchmarks.launch SECONDS MODULE [ARGUMENTS ...]``.
A thread that wants the GIL may wait up to the switch interval (5 ms by
default in CPython) while another thread runs Python code. The service's
asyncpg bridge thread can pay that wait on every database reply.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: python -m benchmarks.launch SECONDS MODULE [ARGUMENTS ...]")
    interval = float(sys.argv[1])
    module = sys.argv[2]
    sys.setswitchinterval(interval)
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
