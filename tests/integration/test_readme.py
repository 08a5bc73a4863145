"""README.md's "Try it without a cluster", run line by line as a newcomer
would in a fresh clone, reaches a promoted challenger."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from newcomer import clone_env


def try_it_lines(readme: str) -> list[str]:
    section = readme.split("## Try it without a cluster", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the section has no sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_try_it_without_a_cluster_reaches_a_promoted_challenger(fresh_clone: Path) -> None:
    lines = try_it_lines((fresh_clone / "README.md").read_text())
    watch = [n for n, line in enumerate(lines) if re.match(r"kubectl get \S+ -w\b", line)]
    assert len(watch) == 1, "the section watches the experiment once"
    # The watch runs until a person presses Ctrl-C: here, until the experiment is Promoted (bounded).
    command = lines[watch[0]].split("#", 1)[0].strip()
    lines[watch[0]] = f"timeout 420 {command} | grep -m1 -w Promoted"
    script = "\n".join(
        [
            "set -ex",
            # whatever fails, nothing stays behind
            "trap 'kill %1 2>/dev/null || true; relearn sandbox down >/dev/null 2>&1 || true' EXIT",
            *lines,
        ]
    )
    result = subprocess.run(
        ["bash", "-c", script], cwd=fresh_clone, env=clone_env(fresh_clone), capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    operator_log = fresh_clone / ".relearn" / "operator.log"
    assert result.returncode == 0, f"exit {result.returncode}\n{output[-6000:]}\n--- operator log\n" + (
        operator_log.read_text()[-3000:] if operator_log.exists() else "none"
    )
    assert re.search(r"documents-1\.1\.0\s+documents\s+1\.0\.0\s+1\.1\.0\s+100\s.*Promoted", output), output[-4000:]
    assert re.search(r"modelversion\.relearn\.dev/documents-1\.1\.0\s+documents\s+1\.1\.0\s+Champion", output)
    assert re.search(r"modelversion\.relearn\.dev/documents-1\.0\.0\s+documents\s+1\.0\.0\s+Archived", output)
    assert "sandbox stopped" in output
    assert re.search(r"documents\W+1\.1\.0 \(", output), output[-4000:]  # relearn status: the new champion
    assert "report written to" in output
    page = (fresh_clone / ".relearn" / "report.html").read_text()
    assert "<section id='experiments'>" in page
    assert "ChallengerBetter" in page
