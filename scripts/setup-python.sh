#!/usr/bin/env bash
# Creates the Python virtual environment of the test suite (default .venv, or $SPANMATCH_VENV)
# and installs python/requirements-test.txt into it (PyTorch brings about 5 GB of CUDA
# libraries from the package index; it runs on the CPU as is). Idempotent: a second run only
# checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPANMATCH_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating the virtual environment $VENV ..." >&2
  python3 -m venv "$VENV" || {
    echo "python3 -m venv failed: install python3-venv (Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r python/requirements-test.txt
