#!/usr/bin/env bash
# Compile every CUDA source in kernels/ for the architectures we support and
# print the resource use of every kernel. Fails on any compiler error or
# warning (nvcc -Werror all-warnings, ptxas --warning-as-error), on any
# register spill or local-memory use, and when nvcc is missing.
#
# Usage: .ci/compile_kernels.sh
#   NVCC=/path/to/nvcc      the compiler (default: nvcc on PATH, then /usr/local/cuda)
#   KERNEL_DIR=dir          the sources (default: kernels)
#   EXTRA_NVCC_FLAGS=...    added to every nvcc call (e.g. to check this script:
#                           -maxrregcount=16 must make it fail on spills)
# The options mirror what CuPy passes to NVRTC at run time (C++17, -ftz=true,
# no fast-math); tests/test_kernels_host.py compiles the same sources through
# NVRTC itself when it is installed.
set -euo pipefail

cd "$(dirname "$0")/.."
ARCHS=(75 80 86 90)
KERNEL_DIR="${KERNEL_DIR:-kernels}"
read -r -a EXTRA <<<"${EXTRA_NVCC_FLAGS:-}"

NVCC="${NVCC:-}"
if [[ -z "$NVCC" ]]; then
    if command -v nvcc >/dev/null 2>&1; then
        NVCC="$(command -v nvcc)"
    elif [[ -x /usr/local/cuda/bin/nvcc ]]; then
        NVCC=/usr/local/cuda/bin/nvcc
    else
        echo "compile_kernels: nvcc not found (set NVCC or put it on PATH)" >&2
        exit 1
    fi
fi
"$NVCC" --version | tail -n 2

shopt -s nullglob
SOURCES=("$KERNEL_DIR"/*.cu)
HEADERS=("$KERNEL_DIR"/*.cuh)
if [[ ${#SOURCES[@]} -eq 0 ]]; then
    echo "compile_kernels: no .cu files in $KERNEL_DIR/" >&2
    exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
status=0

# The __host__ __device__ header must also be clean C++ for the host compiler.
CXX="${CXX:-$(command -v g++ || command -v c++ || true)}"
if [[ -n "$CXX" ]]; then
    for header in "${HEADERS[@]}"; do
        if ! "$CXX" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -x c++ "$header"; then
            echo "FAIL: $header does not compile cleanly for the host with $CXX" >&2
            status=1
        fi
    done
fi

for src in "${SOURCES[@]}"; do
    for arch in "${ARCHS[@]}"; do
        log="$WORK/$(basename "$src").sm_$arch.log"
        if ! "$NVCC" -cubin -arch="sm_$arch" -std=c++17 -O3 -ftz=true -I"$KERNEL_DIR" \
            -Werror all-warnings "${EXTRA[@]}" \
            -Xptxas -v,-warn-spills,-warn-lmem-usage,--warning-as-error \
            -o "$WORK/$(basename "$src" .cu).sm_$arch.cubin" "$src" >"$log" 2>&1; then
            cat "$log"
            echo "FAIL: $src for sm_$arch does not compile" >&2
            status=1
            continue
        fi
        echo "== $src sm_$arch"
        # ptxas -v: one 'Compiling entry function', 'Function properties'
        # (stack, spills) and 'Used N registers' block per kernel.
        awk '
            /Compiling entry function/ { match($0, /'"'"'[^'"'"']+'"'"'/); name = substr($0, RSTART + 1, RLENGTH - 2) }
            /bytes stack frame/ { frame = $0; sub(/^[ \t]+/, "", frame) }
            /Used [0-9]+ registers/ { use = $0; sub(/.*: /, "", use); printf "   %-42s %s; %s\n", name, use, frame }
        ' "$log"
        if grep -Eiq "warning" "$log"; then
            grep -Ei "warning" "$log" >&2
            echo "FAIL: $src for sm_$arch: compiler warnings" >&2
            status=1
        fi
        if grep -Eq "[1-9][0-9]* bytes spill (stores|loads)" "$log"; then
            grep -E "spill" "$log" >&2
            echo "FAIL: $src for sm_$arch: register spills" >&2
            status=1
        fi
        if grep -Eq "[1-9][0-9]* bytes lmem" "$log"; then
            grep -E "lmem" "$log" >&2
            echo "FAIL: $src for sm_$arch: local memory used" >&2
            status=1
        fi
    done
done

if [[ $status -eq 0 ]]; then
    echo "compile_kernels: ${#SOURCES[@]} source(s) compiled for$(printf ' sm_%s' "${ARCHS[@]}") without warnings, spills or local memory"
else
    echo "compile_kernels: FAILED" >&2
fi
exit $status
