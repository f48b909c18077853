#!/usr/bin/env bash
# Create (or update) the virtual environment at $VENV (default .venv) from the repo's own files.
# torch is installed first and exactly: the CPU wheel of 2.13.0 keeps pip from pulling CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
echo "environment ready: $VENV"
