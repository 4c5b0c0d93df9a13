"""How many processes serve the service in a run: one, ``--workers N`` or ``--nodes N``.

``tickets serve --workers N`` runs N processes on one port (SO_REUSEPORT)
under a parent that restarts dead workers. ``--nodes N`` runs N separate
``tickets serve`` processes on their own HTTP and internal forwarding ports,
sharing one database; the load is split evenly across them. One process is
the same plain ``tickets serve`` in both cases, so a count of 1 in either
list means the same run.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

SINGLE = "single"
WORKERS = "workers"
NODES = "nodes"

# `tickets serve --workers` accepts 1 to 64 (api/cli.py); --nodes uses the same bound.
MAX_PROCESSES = 64


@dataclass(frozen=True)
class ServiceLayout:
    """The processes that serve one run: ``mode`` is single, workers or nodes, ``count`` how many."""

    mode: str
    count: int

    @property
    def label(self) -> str:
        """Return the name shown in reports: "1 process", "2 workers" or "2 nodes"."""
        if self.mode == SINGLE:
            return "1 process"
        return f"{self.count} {self.mode}"

    @property
    def slug(self) -> str:
        """Return the part of raw file names and database names for this layout ("" for one process)."""
        return "" if self.mode == SINGLE else f"{self.count}{self.mode}"

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "processes": self.count, "label": self.label}


ONE_PROCESS = ServiceLayout(SINGLE, 1)


def parse_process_counts(text: str) -> list[int]:
    """Parse a comma-separated list of process counts such as ``1,2``; return them sorted, without repeats.

    Raises ``argparse.ArgumentTypeError`` (so argparse exits with status 2)
    for an empty list or a count that is not a whole number from 1 to
    ``MAX_PROCESSES``.
    """
    parts = [part.strip() for part in text.split(",")]
    counts = []
    for part in parts:
        if not part.isascii() or not part.isdigit() or not 1 <= int(part) <= MAX_PROCESSES:
            raise argparse.ArgumentTypeError(
                f"invalid process count {part!r} in {text!r}: expected whole numbers from 1 to {MAX_PROCESSES} "
                "separated by commas, for example 1,2"
            )
        counts.append(int(part))
    return sorted(set(counts))


def service_layouts(workers: list[int] | None, nodes: list[int] | None) -> list[ServiceLayout]:
    """Return the layouts to run the service in: one process first, then workers, then nodes, each ascending.

    With neither option the service runs as one process, as it always did.
    A count of 1 from either option is the one-process layout, run once.
    """
    if not workers and not nodes:
        return [ONE_PROCESS]
    layouts: list[ServiceLayout] = []
    if 1 in (workers or []) or 1 in (nodes or []):
        layouts.append(ONE_PROCESS)
    layouts += [ServiceLayout(WORKERS, count) for count in workers or [] if count > 1]
    layouts += [ServiceLayout(NODES, count) for count in nodes or [] if count > 1]
    return layouts


def split_connections(connections: int, parts: int) -> list[int]:
    """Split ``connections`` into ``parts`` shares that differ by at most one, larger shares first."""
    share, remainder = divmod(connections, parts)
    return [share + (1 if index < remainder else 0) for index in range(parts)]
