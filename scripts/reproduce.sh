#!/usr/bin/env bash
# The main job: installs what is missing, builds spanmatch, and runs `spanmatch reproduce` with its
# defaults (3 nets on Fashion-MNIST, every layer compared, report in ./spanmatch-report/).
# Extra arguments go to `spanmatch reproduce` (see `spanmatch reproduce --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The first build compiles the training framework (several minutes on 2 cores): show its progress.
echo "building spanmatch (release; the first build takes several minutes) ..." >&2
cargo build --release --bin spanmatch
exec target/release/spanmatch reproduce "$@"
