#!/usr/bin/env bash
# The one-shot device check (issue 12): about 5 minutes on one GPU, a few on the CPU.
#   bash benchmarks/gpu/check.sh [--device cuda|cuda:N|cpu] [more check.py options, e.g. --only gate]
# Prints one line per figure: the CUDA tests (`pytest -m cuda`), then benchmarks/gpu/check.py's
# (a v2 search end to end, our EfficientNetV2-S step vs torchvision's and timm's, a candidate's
# step alone vs beside a training trial with the gate, peak memory of a proxy trial).
#
# A bare GPU box (torch, numpy, pyyaml; no optuna, no network) installs what it lacks from
# benchmarks/gpu/wheelhouse/ (made here by wheelhouse.sh; git-ignored, so carry it along), offline,
# into a folder of its own: the box's Python is left as it was. nas runs from this checkout.
# With $OUT set (the device tool), the figures are also written to $OUT/check.json.
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
device=cuda
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --device=*) device="${1#--device=}"; shift ;;
        *) rest+=("$1"); shift ;;
    esac
done
py="${PYTHON:-$(command -v python3 || command -v python)}"
work="$(mktemp -d "${TMPDIR:-/tmp}/nas-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if ! "$py" -c "import optuna, tqdm, pytest, mlxtend, scipy" 2>/dev/null; then
    wheels=(benchmarks/gpu/wheelhouse/*.whl)
    if [ ! -e "${wheels[0]}" ]; then
        echo "check: optuna/tqdm/pytest/mlxtend/scipy missing and no wheelhouse; run benchmarks/gpu/wheelhouse.sh where the network is" >&2
        exit 2
    fi
    # --no-deps: exactly the wheels carried (torch and numpy stay the box's own)
    "$py" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --target "$work/deps" "${wheels[@]}" \
        || { echo "check: installing the wheelhouse failed" >&2; exit 2; }
    export PYTHONPATH="$work/deps"
    echo "setup: installed ${#wheels[@]} wheels from the wheelhouse (offline)"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=3
status=0

# every module of nas imports here, or one line names what is missing (before minutes of work)
"$py" benchmarks/gpu/check_imports.py || exit 2

# The CUDA tests (skipped on a machine without a GPU). addopts emptied: the box has pytest alone,
# none of the plugins the project's options may name.
start=$(date +%s)
"$py" -m pytest -o addopts="" -p no:cacheprovider -q -m cuda tests/test_cuda.py >"$work/pytest.log" 2>&1
rc=$?
summary="$(grep -E "passed|failed|skipped|error|no tests ran" "$work/pytest.log" | tail -1)"
echo "cuda tests (pytest -m cuda): ${summary:-no summary, exit $rc} [$(( $(date +%s) - start )) s]"
if [ $rc -ne 0 ]; then
    status=1
    grep -E "^(FAILED|ERROR)" "$work/pytest.log" | head -20
    tail -40 "$work/pytest.log" >&2
fi

json=()
if [ -n "${OUT:-}" ]; then json=(--json "$OUT/check.json"); fi
# ${a[@]+...}: an empty array under `set -u` on bash < 4.4
"$py" benchmarks/gpu/check.py --device "$device" ${json[@]+"${json[@]}"} ${rest[@]+"${rest[@]}"} || status=1
exit $status
