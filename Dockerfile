# syntax=docker/dockerfile:1
# gpulogreg images for batch jobs.
#
#   docker build --target cpu -t gpulogreg:cpu .
#   docker build --target gpu -t gpulogreg:gpu .       # run with: docker run --gpus all ...
#   docker run --rm -v "$PWD:/data" gpulogreg:cpu fit train.parquet --target label --model model.glr
#
# Every pip install below installs from docker/requirements-*.txt (pinned) or the wheel built in
# the first stage; .ci/check_docker.sh lints this file with hadolint and runs the same installs in
# fresh virtualenvs.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

# ---------------------------------------------------------------- wheel: build from the checkout
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY docker/requirements-build.txt /tmp/requirements/
RUN pip install --no-cache-dir -r /tmp/requirements/requirements-build.txt
COPY pyproject.toml README.md ./
COPY gpulogreg ./gpulogreg
COPY kernels ./kernels
RUN python -m build --wheel --no-isolation --outdir /dist .

# ---------------------------------------------------------------- cpu: slim Python, non-root
FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/opt/numba-cache \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
COPY docker/requirements-cpu.txt /tmp/requirements/
COPY --from=wheel /dist /tmp/dist
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir -r /tmp/requirements/requirements-cpu.txt \
    && pip install --no-cache-dir --no-deps /tmp/dist/*.whl \
    && pip check \
    && rm -rf /tmp/dist /tmp/requirements \
    && groupadd --gid 10001 gpulogreg \
    && useradd --no-log-init --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin gpulogreg
# Compile the Numba kernels of the default fits (float32 and float64 data) once, at build time:
# a batch job then loads them instead of compiling them (measured with `gpulogreg fit` on 5,000
# CSV rows: 12.9 s with an empty cache, 4.1 s after this warm-up). The cache is writable by any
# user: the images also run as the caller (`--user "$(id -u):$(id -g)"`), and where no cache
# folder is writable Numba stops with "cannot cache function". On a CPU unlike the build
# machine's, Numba compiles again and adds the result to the cache.
RUN mkdir -p "$NUMBA_CACHE_DIR" \
    && for dtype in float32 float64; do \
        gpulogreg demo --rows 20000 --cols 5 --test-rows 1000 --dtype "$dtype" --no-progress; \
    done \
    && chmod -R a+rwX "$NUMBA_CACHE_DIR"
# Numeric, so that the host and Kubernetes' runAsNonRoot can resolve it.
USER 10001:10001
WORKDIR /data
ENTRYPOINT ["gpulogreg"]
CMD ["--help"]

# ---------------------------------------------------------------- gpu: CUDA runtime + CuPy
FROM ${CUDA_IMAGE} AS gpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/opt/numba-cache \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# The distribution's Python (3.12 on Ubuntu 24.04); its security updates come with the base image,
# so the packages are not pinned to a version that the next base image would no longer carry.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY docker/requirements-cpu.txt docker/requirements-gpu.txt /tmp/requirements/
COPY --from=wheel /dist /tmp/dist
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir -r /tmp/requirements/requirements-gpu.txt \
    && pip install --no-cache-dir --no-deps /tmp/dist/*.whl \
    && pip check \
    && rm -rf /tmp/dist /tmp/requirements \
    && groupadd --gid 10001 gpulogreg \
    && useradd --no-log-init --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin gpulogreg
# Compile the Numba kernels of the default fits (float32 and float64 data) once, at build time:
# a batch job then loads them instead of compiling them (measured with `gpulogreg fit` on 5,000
# CSV rows: 12.9 s with an empty cache, 4.1 s after this warm-up). The cache is writable by any
# user: the images also run as the caller (`--user "$(id -u):$(id -g)"`), and where no cache
# folder is writable Numba stops with "cannot cache function". On a CPU unlike the build
# machine's, Numba compiles again and adds the result to the cache.
RUN mkdir -p "$NUMBA_CACHE_DIR" \
    && for dtype in float32 float64; do \
        gpulogreg demo --rows 20000 --cols 5 --test-rows 1000 --dtype "$dtype" --no-progress; \
    done \
    && chmod -R a+rwX "$NUMBA_CACHE_DIR"
# Numeric, so that the host and Kubernetes' runAsNonRoot can resolve it.
USER 10001:10001
WORKDIR /data
ENTRYPOINT ["gpulogreg"]
CMD ["info"]
