#!/usr/bin/env bash
# The GPU's first run (issue 11), in two stages that each fit in ten minutes:
#
#   bash bench/gpu_first_run.sh tests  OUTDIR   # install; train timed; GPU tests; CPU/GPU agreement
#   bash bench/gpu_first_run.sh bench  OUTDIR   # xpnet bench --device cuda (json + markdown)
#
# For a machine with CuPy, PyTorch, NumPy and pytest already there and no network. xpnet's
# other requirements and the tests' come from a wheel folder made beforehand where there
# is network, and carried along (git-ignored):
#
#   bash bench/gpu_first_run.sh wheels          # fills .gpu-wheels (Python 3.10 to 3.14)
#
# pip installs from it only what is missing, and the project itself with --no-deps.
# Everything lands in OUTDIR (default: $OUT, else ./gpu-run), failures.txt listing the
# steps that failed; the exit status is the first failing step's.
set -uo pipefail
stage="${1:?usage: gpu_first_run.sh wheels|tests|bench [OUTDIR]}"
WHEELS=(array-api-compat threadpoolctl tqdm hypothesis sortedcontainers exceptiongroup typing-extensions array-api-strict)
if [ "$stage" = wheels ]; then
    cd "$(dirname "$0")/.." || exit 1
    for v in 3.10 3.11 3.12 3.13 3.14; do  # hypothesis ships one wheel per CPython version
        python -m pip download --quiet --no-deps --only-binary=:all: --python-version "$v" \
            --platform manylinux2014_x86_64 -d .gpu-wheels "${WHEELS[@]}" || exit 1
    done
    ls .gpu-wheels
    exit 0
fi
out="$(mkdir -p "${2:-${OUT:-gpu-run}}" && cd "${2:-${OUT:-gpu-run}}" && pwd)"
cd "$(dirname "$0")/.."
status=0
step() {  # note a failure, keep the first one's status, go on with the rest
    local rc=$?
    [ "$rc" -eq 0 ] && return
    echo "FAILED ($rc): $1" | tee -a "$out/failures.txt"
    [ "$status" -ne 0 ] || status=$rc
}

pip=(python -m pip --disable-pip-version-check)
if [ -d .gpu-wheels ]; then
    "${pip[@]}" install --quiet --no-index --find-links .gpu-wheels "${WHEELS[@]}"; step "wheels from .gpu-wheels"
fi
"${pip[@]}" install --quiet --no-index --no-deps --no-build-isolation -e .; step "pip install -e ."
python -c "import xpnet, array_api_compat, threadpoolctl, tqdm" || { echo "xpnet's requirements are missing" >&2; exit 1; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"
  python -c "import torch; print('torch', torch.__version__)"; } 2>&1 | tee "$out/gpu.txt"

case "$stage" in
tests)
    # end to end first, while CuPy's kernel cache is empty (a fresh one), then warm
    export CUPY_CACHE_DIR
    CUPY_CACHE_DIR="$(mktemp -d)"
    TIMEFORMAT="%R s wall"
    train_rc=0
    for run in "cpu" "cuda (kernel cache cold)" "cuda (kernel cache warm)"; do
        echo "== xpnet train --device ${run%% *}: $run"
        time xpnet train --device "${run%% *}" --json --quiet
        rc=$?; [ "$rc" -eq 0 ] || train_rc=$rc
    done > "$out/train-times.txt" 2>&1
    (exit "$train_rc"); step "xpnet train"
    cat "$out/train-times.txt"
    # every cuda test must run: XPNET_REQUIRE_GPU turns a skip for want of a GPU into a failure;
    # SIGINT on time-out still lets pytest write its summary and the XML
    XPNET_REQUIRE_GPU=1 timeout -s INT -k 15 300 python -m pytest -m cuda -q -p no:cacheprovider -rfEs \
        --junitxml="$out/cuda-tests.xml" > "$out/cuda-tests.txt" 2>&1; step "pytest -m cuda"
    tail -40 "$out/cuda-tests.txt"
    timeout -s INT 150 python bench/cpu_gpu_agreement.py --json "$out/agreement.json" 2>&1 \
        | tee "$out/agreement.txt"; step "cpu_gpu_agreement.py"
    ;;
bench)
    timeout -s INT -k 15 540 xpnet bench --device cuda --json "$out/bench.json" --markdown "$out/bench.md" \
        2>&1 | tee "$out/bench.txt"; step "xpnet bench --device cuda"
    ;;
*)
    echo "unknown stage '$stage': expected wheels, tests or bench" >&2
    exit 2
    ;;
esac
exit "$status"
