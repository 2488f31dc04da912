#!/usr/bin/env bash
# The test command CI runs (after ./setup.sh): lint, then the whole pytest suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
