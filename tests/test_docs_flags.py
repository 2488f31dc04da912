"""README and docs agree with the scripts: every ``--flag`` a documented ``python jobs/X.py`` command shows is
one of that script's options (its ``--help``), and every script that submits jobs takes one ``--time`` and
``--mem`` vocabulary and the in-process backend under the name ``debug``."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"python (?:-m salnet\.(metrics) score|jobs/(\w+)\.py)\b([^\n`#]*)")


def help_text(script: str) -> str:
    if script == "metrics":  # python -m salnet.metrics score
        from salnet.metrics.__main__ import build_parser

        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            build_parser().parse_args(["score", "--help"])
        return out.getvalue()
    spec = importlib.util.spec_from_file_location(f"{script}_job", REPO / "jobs" / f"{script}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        mod.main(["--help"])
    return out.getvalue()


def documented() -> dict[str, set[tuple[str, str]]]:
    """{script: {(flag, where)}} of the ``python jobs/X.py ... --flag`` commands in README.md and docs/*.md."""
    found: dict[str, set[tuple[str, str]]] = {}
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for m in COMMAND.finditer(line):
                for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", m.group(3)):
                    found.setdefault(m.group(1) or m.group(2), set()).add((flag, f"{doc.name}:{n}"))
    return found


DOCUMENTED = documented()


@pytest.mark.parametrize("script", sorted(DOCUMENTED))
def test_documented_flags_exist(script):
    text = help_text(script)
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))
    missing = sorted(f"{flag} ({where})" for flag, where in DOCUMENTED[script] if flag not in options)
    assert missing == [], f"jobs/{script}.py has no option {missing}"


@pytest.mark.parametrize("script", ["launch", "pack", "evaluate"])
def test_one_vocabulary_for_submitting_jobs(script):
    text = help_text(script)
    assert "--time" in text and "H:M:S or D-H:M:S" in " ".join(text.split())
    assert "debug" in text and re.search(r"--backend \{[^}]*debug", text)
    assert re.search(r"--mem[ ,]", text)
