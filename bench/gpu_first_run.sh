#!/usr/bin/env bash
# The GPU's first run (issue 11), in two stages that each fit in ten minutes:
#
#   bash bench/gpu_first_run.sh tests  OUTDIR   # install; GPU tests; CPU/GPU agreement; train timed
#   bash bench/gpu_first_run.sh bench  OUTDIR   # xpnet bench --device cuda (json + markdown)
#
# For a machine with CuPy, PyTorch and pytest already there and nothing to download:
# the project is installed without its dependencies. Everything lands in OUTDIR
# (default: $OUT, else ./gpu-run).
set -uo pipefail
stage="${1:?usage: gpu_first_run.sh tests|bench [OUTDIR]}"
out="${2:-${OUT:-gpu-run}}"
mkdir -p "$out"
cd "$(dirname "$0")/.."

pip install --quiet --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" | tee -a "$out/gpu.txt"

case "$stage" in
tests)
    # every cuda test must run: XPNET_REQUIRE_GPU turns a skip for want of a GPU into a failure
    XPNET_REQUIRE_GPU=1 timeout 330 python -m pytest -m cuda -q -p no:cacheprovider -rfEs \
        --junitxml="$out/cuda-tests.xml" 2>&1 | tail -60 | tee "$out/cuda-tests.txt"
    timeout 150 python bench/cpu_gpu_agreement.py --json "$out/agreement.json" 2>&1 | tee "$out/agreement.txt"
    # end to end, kernel cache cold then warm (CuPy caches compiled kernels in ~/.cupy/kernel_cache)
    for device in cpu cuda cuda; do
        /usr/bin/time -f "$device wall %e s" xpnet train --device "$device" --json --quiet 2>&1 | tail -2
    done | tee "$out/train-times.txt"
    ;;
bench)
    timeout 560 xpnet bench --device cuda --json "$out/bench.json" --markdown "$out/bench.md" 2>&1 | tail -60
    ;;
*)
    echo "unknown stage '$stage': expected tests or bench" >&2
    exit 2
    ;;
esac
