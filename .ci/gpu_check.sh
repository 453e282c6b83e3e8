#!/usr/bin/env bash
# gpulogreg's GPU check: one command on a machine with a CUDA device, in under 8 minutes.
#
# Usage (from anywhere in the checkout):   bash .ci/gpu_check.sh
#   OUT=dir       where the results go (default: ./gpu-check-out); summary.txt lists the steps
#   PYTHON=exe    the interpreter (default: python3); it must already have NumPy, Numba, CuPy,
#                 scikit-learn and pytest: nothing is installed and the network is not used
# The checkout is put first on PYTHONPATH, so the code tested is this checkout's.
#
# Steps, cheapest and riskiest first, so that a short lease still yields facts; each runs
# under its own limit, and no step starts after the whole budget (TOTAL_SECONDS) is spent:
#   device    nvidia-smi, versions, every GPU's properties, gpulogreg's gpu_status
#             -> stops here with a "GPU NOT USABLE" line (exit 1) when gpulogreg cannot use a GPU
#   kernels   NVRTC compile of every entry point: registers, shared and local memory, grid
#             (the grid fixes the order of the partial sums: see README, GPU)
#   solvers   every solver, float32 and float64, 2 and 4 classes: GPU fit against CPU fit
#   tests     the gpu-marked tests with --require-gpu (a skip is a failure), JUnit XML too
#   sparse    bench/bench_sparse_gpu.py: the CSR path on issue 9's click-log-like and text-like
#             data (X^T R as CSC gather, atomics and cuSPARSE; floor; repeatability; lanes),
#             float32 then float64, JSON lines to gpu.jsonl as each block is measured
#   big       a 30,000,000 x 100 float32 X (3e9 elements, > 2^31) against sums over blocks
#   bench     bench/bench_gpu.py, 1,000,000 x 100, float32 then float64, JSON lines to gpu.jsonl
# Exit status: 1 without a usable GPU, else the number of steps that failed or ran out of time.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
O=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$O"
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CUPY_DUMP_CUDA_SOURCE_ON_ERROR=1
TOTAL_SECONDS=460  # 7 min 40 s from the start: each step is cut to what is left of it
START=$SECONDS
FAILED=0
: >"$O/summary.txt"

note() { echo "$1" | tee -a "$O/summary.txt"; }

# step NAME LIMIT_SECONDS COMMAND...: run with the smaller of its limit and the time left;
# its output goes to the terminal and to $O/NAME.txt; one status line goes to summary.txt.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((TOTAL_SECONDS - (SECONDS - START)))
    if ((left < 10)); then
        note "== $name: NOT RUN (the ${TOTAL_SECONDS} s budget is spent)"
        FAILED=$((FAILED + 1))
        return
    fi
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit} s, $(date +%T))"
    local began=$SECONDS
    timeout -k 5 "$limit" "$@" 2>&1 | tee "$O/$name.txt"  # KILL 5 s after TERM if stuck
    local rc=${PIPESTATUS[0]}
    local took=$((SECONDS - began))
    if ((rc == 0)); then
        note "== $name: ok (${took} s)"
    elif ((rc == 124)); then
        note "== $name: TIMED OUT after ${limit} s"
        FAILED=$((FAILED + 1))
    else
        note "== $name: FAILED (exit $rc, ${took} s)"
        FAILED=$((FAILED + 1))
    fi
}

echo "== device ($(date +%T))"
timeout -k 5 30 "$PY" bench/gpu_check.py facts 2>&1 | tee "$O/device.txt"  # seconds
rc=${PIPESTATUS[0]}
if ((rc != 0)); then
    # A GPU run that skips everything proves nothing: stop here, loudly.
    reason=$(grep -m1 '^gpu_status:' "$O/device.txt" | sed 's/^gpu_status: False //')
    note "GPU NOT USABLE: ${reason:-the device facts step failed (exit $rc)}; nothing was checked"
    exit 1
fi
note "== device: ok"

# Limits in seconds: 45 + 90 + 140 + 60 + 50 + 40 + 35 = TOTAL_SECONDS; the device step's
# time comes out of the same budget, so a slow start cuts the last step short, never the total.
# (The CSR kernels doubled the entry points NVRTC compiles: 5 s more for kernels; the sparse
# benchmark's 60 s came from solvers, big and the dense benchmark, 10 + 20 + 30 s.)
step kernels 45 "$PY" bench/gpu_check.py kernels
step solvers 90 "$PY" bench/gpu_check.py solvers
mapfile -t FILES < <("$PY" bench/gpu_check.py testfiles)
step tests 140 "$PY" -m pytest -m gpu --require-gpu -p no:cacheprovider -q -rfEs \
    --junitxml="$O/tests.xml" "${FILES[@]}"
step sparse 60 "$PY" bench/bench_sparse_gpu.py --dtype float32 float64 --repeat 10 \
    --json "$O/gpu.jsonl"
step big 50 "$PY" bench/gpu_check.py big
step bench-float32 40 "$PY" bench/bench_gpu.py --dtype float32 --json "$O/gpu.jsonl"
step bench-float64 35 "$PY" bench/bench_gpu.py --dtype float64 --json "$O/gpu.jsonl"

note "== done in $((SECONDS - START)) s: $FAILED step(s) failed"
exit "$FAILED"
