"""Write one section of bench/RESULTS.md, leaving the other sections as they are."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = (
    "# Benchmark results\n\n"
    "Each section is written by the script named in it, which runs Traceway and its\n"
    "peers side by side in one run on the same machine. Compare figures within a\n"
    "section only: runs on different days or machines are not comparable.\n"
)


def write_section(title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section with ``body`` and a run stamp."""
    stamp = (
        f"_Measured {dt.date.today().isoformat()} on {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.machine()}._\n\n"
    )
    section = f"## {title}\n\n{stamp}{body.rstrip()}\n"
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text.rstrip() + "\n")


def version(dist: str) -> str:
    """The installed version of a distribution, or ``not installed``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
