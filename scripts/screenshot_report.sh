#!/usr/bin/env bash
# Screenshot a spanmatch report.html in headless Chromium and check that it renders cleanly.
#
# Usage: scripts/screenshot_report.sh REPORT_DIR [OUT_PNG]
#   REPORT_DIR  directory holding report.html (as written by `spanmatch reproduce`/`report`)
#   OUT_PNG     screenshot path (default: REPORT_DIR/report_screenshot.png)
# Environment: WINDOW_SIZE (default 1400,3000), CHROMIUM (browser binary; default: chromium).
#
# Fails (non-zero exit) when: report.html is missing, Chromium is missing and cannot be
# installed, the page logs console errors, the rendered DOM holds fewer <svg> elements than
# the file, or no screenshot is produced.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 REPORT_DIR [OUT_PNG]" >&2
    exit 2
fi
report_dir=$1
html="$report_dir/report.html"
if [[ ! -f "$html" ]]; then
    echo "error: $html not found" >&2
    exit 1
fi
html_abs=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
out=${2:-"$report_dir/report_screenshot.png"}
mkdir -p "$(dirname "$out")"
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
window=${WINDOW_SIZE:-1400,3000}

browser=${CHROMIUM:-}
if [[ -z "$browser" ]]; then
    for b in chromium chromium-browser google-chrome; do
        if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
    done
fi
if [[ -z "$browser" ]]; then
    echo "chromium not found; installing it with apt-get" >&2
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: chromium is missing and this is not root; install it (apt-get install -y chromium)" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2
    browser=chromium
fi

profile=$(mktemp -d)
logdir=$(mktemp -d)
trap 'rm -rf "$profile" "$logdir"' EXIT

flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    --disable-default-apps --hide-scrollbars --enable-logging=stderr --v=0)

rm -f "$out_abs"
timeout 120 "$browser" "${flags[@]}" --user-data-dir="$profile" --window-size="$window" --screenshot="$out_abs" \
    "file://$html_abs" >"$logdir/shot.out" 2>"$logdir/shot.err" || {
    echo "error: chromium failed taking the screenshot:" >&2
    tail -20 "$logdir/shot.err" >&2
    exit 1
}
# A second run dumps the DOM after load (separate profile so the runs do not interfere).
profile2=$(mktemp -d)
trap 'rm -rf "$profile" "$profile2" "$logdir"' EXIT
timeout 120 "$browser" "${flags[@]}" --user-data-dir="$profile2" --dump-dom "file://$html_abs" \
    >"$logdir/dom.html" 2>"$logdir/dom.err" || {
    echo "error: chromium failed dumping the DOM:" >&2
    tail -20 "$logdir/dom.err" >&2
    exit 1
}

status=0
if grep -hE "Uncaught|ERROR:CONSOLE|CONSOLE\([0-9]+\).*[Ee]rror|Failed to load resource" \
    "$logdir/shot.err" "$logdir/dom.err" >"$logdir/errors.txt"; then
    echo "error: the page logged console errors:" >&2
    cat "$logdir/errors.txt" >&2
    status=1
fi
svg_file=$(grep -o "<svg" "$html" | wc -l)
svg_dom=$(grep -o "<svg" "$logdir/dom.html" | wc -l)
if [[ "$svg_dom" -lt "$svg_file" || "$svg_file" -eq 0 ]]; then
    echo "error: report.html has $svg_file <svg> elements, the rendered DOM $svg_dom" >&2
    status=1
fi
if [[ ! -s "$out_abs" ]] || [[ $(head -c 8 "$out_abs" | od -An -tx1 | tr -d ' \n') != "89504e470d0a1a0a" ]]; then
    echo "error: no valid PNG screenshot at $out_abs" >&2
    status=1
fi
if [[ $status -eq 0 ]]; then
    echo "ok: $svg_dom SVG figures rendered, no console errors; screenshot $out_abs"
fi
exit $status
