"""Baseline servers that run beside the service under the same load.

- ``ceiling``: the service's HTTP stack with a fixed reply, the most it can serve;
- ``conventional_trio``: one transaction per request on the same stack and bridge;
- ``conventional_asyncio``: the same on plain Quart, Hypercorn's uvloop worker and asyncpg.

Each module exposes an ASGI ``app`` that the benchmark runner serves with
``hypercorn --workers 0`` (one process).
"""
