#!/bin/sh
# Render a report to a PNG with a headless browser (Chromium), to check what users see without
# opening a browser: sh benchmarks/tools/screenshot_report.sh RUN|RESULTS.json [OUT.png]
# (a run folder's report.html, or the page of a `ddkit bench` results file).
# Chromium comes from `apt-get install chromium` (Debian) or any Chrome on PATH ($BROWSER).
set -eu
src=${1:?usage: screenshot_report.sh RUN|RESULTS.json [OUT.png]}
DDKIT=${DDKIT:-$(pwd)/.venv/bin/ddkit}
case "$src" in
  *.json) page=${src%.json}.html; out=${2:-${src%.json}.png} ;;
  *) page=$src/report.html; out=${2:-$src/report.png} ;;
esac
[ -f "$page" ] || "$DDKIT" report "$src" --out "$page" >/dev/null
browser=${BROWSER:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
[ -n "$browser" ] || { echo "no Chromium found: apt-get install chromium, or set BROWSER" >&2; exit 2; }
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,1800 \
  --screenshot="$(realpath "$out")" "file://$(realpath "$page")" 2>/dev/null
echo "wrote $out"
