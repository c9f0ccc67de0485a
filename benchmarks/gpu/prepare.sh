#!/bin/sh
# Fetch the reference implementations and MNIST into benchmarks/gpu/reference/ (ignored by git,
# carried to the GPU machine by the device tool; about 12 MB). Run once on a machine with
# internet, before the GPU call (benchmarks/gpu/README.md).
#   MIRROR=/work/.mirror sh benchmarks/gpu/prepare.sh   # from bare mirrors (owner+name/repo)
#   sh benchmarks/gpu/prepare.sh                         # from GitHub (git clone)
set -eu
cd "$(dirname "$0")"
REF=reference
mkdir -p "$REF/data/mnist"
export_repo() {  # owner/name, dest, files...
  repo=$1; dest=$REF/$2; shift 2
  mkdir -p "$dest"
  if [ -n "${MIRROR:-}" ]; then
    gitdir="$MIRROR/$(echo "$repo" | tr / +)/repo"
  else
    gitdir=$(mktemp -d)/repo.git
    git clone -q --bare --filter=blob:none "https://github.com/$repo" "$gitdir"
  fi
  git --git-dir="$gitdir" rev-parse HEAD > "$dest/COMMIT"
  for f in "$@"; do
    mkdir -p "$dest/$(dirname "$f")"
    git --git-dir="$gitdir" show "HEAD:$f" > "$dest/$f"
  done
}
export_repo VICO-UoE/DatasetCondensation DatasetCondensation main.py main_DM.py networks.py utils.py LICENSE
export_repo GeorgeCazenavette/mtt-distillation mtt-distillation buffer.py distill.py networks.py utils.py reparam_module.py LICENSE.txt
export_repo VILA-Lab/SRe2L SRe2L SRe2L/recover/data_synthesis.py SRe2L/recover/utils.py SRe2L/recover/recover.sh
# MNIST, gzipped IDX (ddkit reads both sides' copy from here): from ddkit's data root
src=${DDKIT_DATA:-$HOME/.local/share/ddkit}/mnist
[ -f "$src/train-images-idx3-ubyte" ] || [ -f "$src/train-images-idx3-ubyte.gz" ] || {
  echo "MNIST not under $src: run sh benchmarks/tools/get_data.sh first" >&2; exit 1; }
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ -f "$src/$f.gz" ]; then cp "$src/$f.gz" "$REF/data/mnist/"; else gzip -c "$src/$f" > "$REF/data/mnist/$f.gz"; fi
done
du -sh "$REF"
