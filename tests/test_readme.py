"""The README's command-line walkthrough works when pasted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- readme-walkthrough -->\n```sh\n(.*?)```", text, re.S)
    assert match, "README.md lost its walkthrough block"
    return match.group(1)


def test_readme_walkthrough_runs(tmp_path: Path) -> None:
    script = walkthrough().replace("/tmp/taktflow-readme", str(tmp_path / "readme"))
    script = script.replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAKTFLOW_")}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "machine_order" in out
    assert "duplicate key, ignored" in out
    assert "instance 1: machine_order v1 - completed" in out
    assert '"machine_hours": 1.39' in out
    assert "0 error(s)" in out  # taktflow lint
    assert "instance 2: first_article v1 - completed" in out
    assert '"deviation_mm": 0.012, "verdict": "release"' in out
    compiled = (tmp_path / "readme" / "first_article.bpmn").read_text()
    assert '<bpmn:process id="first_article"' in compiled
