#!/usr/bin/env bash
# Installs the Debian packages spanmatch uses when they are missing (needs root or sudo):
#   libopenblas0           fast Gram products (loaded at run time; spanmatch falls back to faer)
#   dataset-fashion-mnist  the default data of `spanmatch reproduce` (/usr/share/datasets/fashion-mnist)
# With --test (what .ci/run passes) also:
#   chromium               the browser test of the HTML report (python/tests/test_report_browser.py;
#                          skipped with a reason where no Chromium is installed)
# Nothing else is downloaded: Rust crates come from crates.io through cargo.
set -euo pipefail
packages=(libopenblas0 dataset-fashion-mnist)
[ "${1:-}" = "--test" ] && packages+=(chromium)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing ${missing[*]} ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}"
fi
