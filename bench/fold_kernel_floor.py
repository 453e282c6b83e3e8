"""The fold-batched CV kernel against the read floor, round-robin in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/fold_kernel_floor.py \\
        --rows 500000 --features 50 --folds 5 [--classes 10]

Times, interleaved (medians of ``--repeats``): one parallel read of ``X`` (the
floor), the single-model loss and gradient (binary, or multinomial with
``--classes`` above 2), and the fold kernel
(:func:`gpulogreg.backends._numba_folds.folds_loss_grad`) for 1 .. ``--folds``
fold models of as many outputs, each fold holding out a ``1 / folds`` share of
the rows.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=500_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    from gpulogreg._numba_read import read_once
    from gpulogreg.backends import _numba_kernels as nk
    from gpulogreg.backends._numba_folds import folds_loss_grad
    from gpulogreg.benchmark import make_problem

    m, n, k = int(args.rows), args.features, args.folds
    n_out = args.classes if args.classes > 2 else 1
    X, labels = make_problem(m, n, dtype="float32", seed=0)
    rng = np.random.default_rng(1)
    y = labels.astype(np.int32) if n_out == 1 else rng.integers(0, n_out, m).astype(np.int32)
    s = np.full(m, 1.0 / m)
    held_out = np.arange(m) % k
    counts = (held_out[:, None] != np.arange(k)).astype(np.uint8)
    scale = 1.0 / (s @ counts)
    W = rng.standard_normal((k * n_out, n)) * 0.1
    bias = np.zeros(k * n_out)
    every = np.arange(k, dtype=np.int64)
    if n_out == 1:
        single = lambda: nk.binary_loss_grad(X, y, s, W[0], 0.0)  # noqa: E731
    else:
        W0, b0 = W[:n_out].copy(), bias[:n_out].copy()
        single = lambda: nk.multinomial_loss_grad(X, y, s, W0, b0)  # noqa: E731
    timed = {"read floor": lambda: read_once(X), "single-model loss+grad": single}
    for a in range(1, k + 1):
        Wa, ba, fa = W[: a * n_out].copy(), bias[: a * n_out].copy(), every[:a].copy()
        timed[f"fold kernel, {a} models"] = lambda Wa=Wa, ba=ba, fa=fa: folds_loss_grad(
            X, y, s, counts, scale, fa, Wa, ba, n_out, True
        )
    times: dict[str, list[float]] = {name: [] for name in timed}
    for f in timed.values():
        f()  # compile
    for _ in range(args.repeats):
        for name, f in timed.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    floor = statistics.median(times["read floor"])
    outputs = "binary" if n_out == 1 else f"{n_out} classes"
    print(f"{m:,} x {n} float32, {outputs}, {k} folds (medians of {args.repeats})")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:>26}: {median * 1e3:7.2f} ms  {median / floor:5.2f}x floor")


if __name__ == "__main__":
    main()
