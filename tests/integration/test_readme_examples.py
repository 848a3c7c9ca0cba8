"""Every Python example in README.md runs, as written, against a real server.

Only the address changes: ``http://localhost:5000`` becomes the test server's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live_server import RunningServer

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The examples run once, against a SQLite-backed server."""
    return f"sqlite:///{tmp_path_factory.mktemp('readme') / 'traceway.db'}"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(server: RunningServer, index: int, tmp_path: Path) -> None:
    source = BLOCKS[index].replace("http://localhost:5000", server.url)
    script = tmp_path / f"example_{index}.py"
    script.write_text(source)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "TRACEWAY_TRACKING_URI": server.url},
        cwd=tmp_path,
    )
    assert result.returncode == 0, f"README example {index} failed:\n{source}\n{result.stderr}"
