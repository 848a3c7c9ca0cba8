"""`pip install traceway` (no extras) is enough for the SDK, and it stays light.

The test builds a virtualenv that sees only the base install: the distributions
`traceway`'s own requirements pull in (resolved from the installed metadata),
linked into a fresh site-packages, plus the package source.
"""

from __future__ import annotations

import re
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
SERVER_SIDE = ("uvicorn", "starlette", "fastapi", "aiohttp", "sqlalchemy", "alembic", "psycopg")


def _base_distributions() -> set[str]:
    """Names of every distribution the base install needs, transitively."""
    seen: set[str] = set()
    todo = ["traceway"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in metadata.requires(name) or []:
            if "extra ==" in requirement:
                continue
            if ";" in requirement and "python_version" not in requirement:
                continue
            match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
            assert match is not None
            todo.append(match.group(0).lower().replace("_", "-"))
    seen.discard("traceway")
    return seen


def _link_distribution(name: str, target: Path) -> None:
    dist = metadata.distribution(name)
    roots = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    base = Path(str(dist.locate_file("")))
    for root in roots:
        source = base / root
        link = target / root
        if source.exists() and not link.exists():
            link.symlink_to(source)


def test_sdk_imports_and_traces_with_only_the_base_install(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    for name in _base_distributions():
        _link_distribution(name, site)
    (site / "traceway-src.pth").write_text(f"{SRC}\n")
    script = (
        "import sys, traceway\n"
        "traceway.configure(exporter=None)\n"
        "@traceway.trace\n"
        "def f(x): return x * 2\n"
        "assert f(21) == 42\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {SERVER_SIDE!r})\n"
        "assert not loaded, loaded\n"
        "try:\n"
        "    import traceway.server.app\n"
        "except ImportError:\n"
        "    print('server needs the extra')\n"
    )
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "server needs the extra"


def test_version_matches_metadata() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "traceway.cli", "--version"], capture_output=True, text=True
    )
    assert metadata.version("traceway") in result.stdout
