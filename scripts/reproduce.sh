#!/usr/bin/env bash
# The main job: installs what is missing, builds spanmatch, and runs `spanmatch reproduce` with its
# defaults (3 nets on Fashion-MNIST, every layer compared, report in ./spanmatch-report/).
# Extra arguments go to `spanmatch reproduce` (see `spanmatch reproduce --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --release --quiet -- reproduce "$@"
