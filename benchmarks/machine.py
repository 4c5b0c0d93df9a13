"""Describe the machine a report was measured on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ["hypercorn", "quart", "quart-trio", "trio", "asyncpg", "uvloop", "pydantic", "pydantic-core", "werkzeug"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe_code() -> dict[str, Any]:
    """Return the git commit of the working tree and the tracked files changed since (read-only git calls)."""
    root = Path(__file__).resolve().parent.parent

    def git(*arguments: str) -> str:
        completed = subprocess.run(["git", "-C", str(root), *arguments], capture_output=True, text=True, check=False)
        return completed.stdout if completed.returncode == 0 else ""

    # Porcelain lines are "XY path", so the path starts at column 3.
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None, "changed_files": changed}


def describe_machine(wrk_version: str, postgres: dict[str, Any]) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "hostname": platform.node(),
        "cores": cores,
        "usable_cores": usable,
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": {package: _version(package) for package in PACKAGES},
        "wrk": wrk_version,
        "postgres": postgres,
        # wrk, the server under test and PostgreSQL are all on this machine.
        "shared_cores_warning": (
            f"wrk, the server under test and PostgreSQL share the same {usable} cores, so the load generator "
            "takes CPU from the server; absolute numbers are lower than on separate machines, ratios between "
            "implementations measured the same way are the meaningful result"
        ),
    }
