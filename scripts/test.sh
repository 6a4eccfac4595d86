#!/usr/bin/env bash
# The whole test suite: Rust (cargo test) and Python (pytest on the package built from this
# checkout). Needs the virtual environment of scripts/setup-python.sh (.venv, or
# $SPANMATCH_VENV). Extra arguments go to pytest (e.g. -k torch).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPANMATCH_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "no virtual environment at $VENV: run scripts/setup-python.sh first" >&2
  exit 1
fi
echo "== Rust: cargo test --workspace --release" >&2
cargo test --workspace --release
echo "== Python: build the package into $VENV (maturin develop --release)" >&2
VIRTUAL_ENV="$(cd "$VENV" && pwd)" "$VENV/bin/maturin" develop --release --quiet
echo "== Python: pytest" >&2
TARGET="${CARGO_TARGET_DIR:-target}"
case "$TARGET" in /*) ;; *) TARGET="$(pwd)/$TARGET" ;; esac
SPANMATCH_BIN="$TARGET/release/spanmatch" "$VENV/bin/python" -m pytest python/tests -q "$@"
