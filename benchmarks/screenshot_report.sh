#!/bin/sh
# Render a run's report.html to a PNG with a headless browser (Chromium), to check what users
# see without opening a browser: sh benchmarks/screenshot_report.sh RUN [OUT.png]
# Chromium comes from `apt-get install chromium` (Debian) or any Chrome on PATH ($BROWSER).
set -eu
run=${1:?usage: screenshot_report.sh RUN [OUT.png]}
out=${2:-$run/report.png}
DDKIT=${DDKIT:-$(pwd)/.venv/bin/ddkit}
[ -f "$run/report.html" ] || "$DDKIT" report "$run" >/dev/null
browser=${BROWSER:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
[ -n "$browser" ] || { echo "no Chromium found: apt-get install chromium, or set BROWSER" >&2; exit 2; }
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,1800 \
  --screenshot="$(realpath "$out")" "file://$(realpath "$run/report.html")" 2>/dev/null
echo "wrote $out"
