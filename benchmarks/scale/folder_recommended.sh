#!/bin/sh
# Issue 82: the recommended path on a generated 100,000-image folder (200 classes x 500 JPEGs at
# 64 px, `make_image_folder.py ROOT --classes 200 --per-class 500 --test-per-class 50`): its
# --dry-run, then the run at IPC 10 under a time budget inside a 4 GiB memory cgroup (root,
# cgroup v1). Wall time and peak memory go to results/scale/commands.json, what the run made to
# results/scale/sets.json, the dry run's answer and the run's progress lines to
# results/scale/folder_recommended/. Before the run the page cache is dropped where this may
# (root), so the folder cache's pages are read inside the cgroup, as on a machine just started.
# Usage: sh benchmarks/scale/folder_recommended.sh ROOT [BUDGET] [WORK_DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=$1
budget=${2:-50m}
work=${3:-/tmp/folder_recommended}
py="$repo/.venv/bin/python"
logs="$repo/benchmarks/results/scale/folder_recommended"
mkdir -p "$work" "$logs"
what="200 x 500 at 64 px, recommended, IPC 10"
"$py" "$here/peak_rss.py" --label "$what: --dry-run" -- \
  ddkit distill --dataset imagefolder --root "$root" --method recommended --ipc 10 \
  --budget "$budget" --dry-run --out "$work/run" > "$logs/dry_run.txt" 2>&1
if [ -w /proc/sys/vm/drop_caches ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
"$py" "$here/peak_rss.py" --memory-limit 4G --label "$what: --budget $budget, 4 GiB cgroup" -- \
  ddkit distill --dataset imagefolder --root "$root" --method recommended --ipc 10 \
  --budget "$budget" --out "$work/run" > "$logs/run.txt" 2>&1
"$py" "$here/set_rows.py" --label "200x500 folder-rec10" \
  --command-label "$what: --budget $budget, 4 GiB cgroup" "$work/run"
