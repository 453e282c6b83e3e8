"""Datasets of CSR chunks: arrays, user chunks, svmlight and ``save_npz`` files, out of core.

Every source of the same values fits the same model as the in-memory CSR fit
and the dense fit (float64, to rounding), without densifying a chunk.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpulogreg import Dataset, LogisticRegression
from gpulogreg._fit import DatasetSource
from gpulogreg.io import DataError, iter_batches, read_data

sp = pytest.importorskip("scipy.sparse")
pytest.importorskip("pyarrow")

#: The CSR backend of most of these tests: the scipy baseline (the fit plan and the
#: data layer are what is tested; the kernels are tested on their own).
BACKEND = "numpy"
#: Relative agreement of fits of the same float64 values (a tight solver tolerance).
RTOL = 1e-8


def _problem(
    m: int = 900, n: int = 25, n_classes: int = 2, seed: int = 0
) -> tuple[Any, np.ndarray, np.ndarray]:
    """A CSR problem with explicit zeros, empty rows and labels that depend on X."""
    rng = np.random.default_rng(seed)
    X = sp.random(m, n, density=0.25, format="csr", random_state=seed)
    keep = np.ones(m)
    keep[7] = 0.0
    X = sp.csr_matrix(sp.diags(keep) @ X)
    X.eliminate_zeros()  # row 7 is empty
    X.data[::13] = 0.0  # explicit zeros stay stored
    z = X @ rng.normal(size=(n, n_classes)) + 0.3 * rng.normal(size=(m, n_classes))
    y = (z[:, 0] > np.median(z[:, 0])) if n_classes == 2 else z.argmax(axis=1)
    weights = rng.uniform(0.5, 2.0, size=m)
    return X, np.asarray(y, dtype=np.int64), weights


def _svmlight_text(X: Any, y: np.ndarray, *, base: int = 1) -> str:
    """svmlight lines of CSR rows, values exactly (repr round-trips float64)."""
    lines = []
    for label, start, stop in zip(y, X.indptr[:-1], X.indptr[1:], strict=True):
        row = zip(X.indices[start:stop], X.data[start:stop], strict=True)
        pairs = (f"{j + base}:{float(v)!r}" for j, v in row)
        lines.append(" ".join([str(label), *pairs]))
    return "\n".join(lines) + "\n"


def _model(**params: Any) -> LogisticRegression:
    return LogisticRegression(
        **{"backend": BACKEND, "C": 0.5, "tol": 1e-12, "max_iter": 500, **params}
    )


def _close(a: Any, b: Any) -> None:
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=RTOL, atol=RTOL * np.abs(b.coef_).max())
    np.testing.assert_allclose(a.intercept_, b.intercept_, rtol=RTOL, atol=1e-10)


# --------------------------------------------------------------------------- sources
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_every_csr_source_fits_the_in_memory_and_the_dense_model(
    tmp_path: Path, n_classes: int, backend: str
) -> None:
    X, y, _ = _problem(n_classes=n_classes)
    dense = _model(backend=backend).fit(X.toarray(), y)
    in_memory = _model(backend=backend).fit(X, y)
    _close(in_memory, dense)
    path = tmp_path / "d.svm"
    path.write_text(_svmlight_text(X, y))
    sp.save_npz(tmp_path / "X.npz", X)
    np.save(tmp_path / "y.npy", y)
    # User chunks in other formats and orders: made canonical CSR on every pass.
    parts = [(X[a : a + 200].tocsc(), y[a : a + 200]) for a in range(0, X.shape[0], 200)]
    datasets = {
        "arrays": Dataset.from_arrays(X, y, chunk_rows=128),
        "chunks": Dataset.from_chunks(parts),
        "svmlight": Dataset.from_svmlight(path, chunk_rows=256),
        "npz": Dataset.from_npz(tmp_path / "X.npz", tmp_path / "y.npy", chunk_rows=300),
    }
    for name, dataset in datasets.items():
        info = dataset.scan()
        assert info.sparse, name
        assert info.nnz == X.nnz, name
        assert info.n_features == X.shape[1], name
        chunked = _model(backend=backend).fit(dataset)
        assert chunked.backend_ == f"chunked({backend})", name
        _close(chunked, dense)
        np.testing.assert_array_equal(chunked.classes_, dense.classes_)


def test_weighted_chunks_and_class_weights(tmp_path: Path) -> None:
    X, y, w = _problem(seed=3)
    dense = _model(class_weight="balanced").fit(X.toarray(), y, sample_weight=w)
    parts = [(X[a : a + 250], y[a : a + 250], w[a : a + 250]) for a in range(0, X.shape[0], 250)]
    _close(_model(class_weight="balanced").fit(Dataset.from_chunks(parts)), dense)
    sp.save_npz(tmp_path / "X.npz", X, compressed=False)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "w.npy", w)
    npz = Dataset.from_npz(
        tmp_path / "X.npz", tmp_path / "y.npy", sample_weight_path=tmp_path / "w.npy"
    )
    _close(_model(class_weight="balanced").fit(npz), dense)


def test_float32_values_stay_float32(tmp_path: Path) -> None:
    X, y, _ = _problem(seed=4)
    X32 = X.astype(np.float32)
    path = tmp_path / "d.svm"
    path.write_text(_svmlight_text(X32, y))
    dataset = Dataset.from_svmlight(path, dtype="float32", chunk_rows=200)
    assert dataset.scan().dtype == np.float32
    assert all(c.X.dtype == np.float32 for c in dataset.iter_chunks())
    sp.save_npz(tmp_path / "X.npz", X32)
    np.save(tmp_path / "y.npy", y)
    assert Dataset.from_npz(tmp_path / "X.npz", tmp_path / "y.npy").scan().dtype == np.float32
    fitted = _model(tol=1e-6).fit(dataset)  # what float32 gradients resolve
    reference = _model(tol=1e-6).fit(X32, y)
    np.testing.assert_allclose(fitted.coef_, reference.coef_, rtol=1e-6, atol=1e-7)


def test_svmlight_dataset_reads_the_base_and_width_it_found(tmp_path: Path) -> None:
    path = tmp_path / "d.svm"
    path.write_text("1 0:1 3:2\n0 2:1\n1 1:4\n")  # index 0: zero-based, width 4
    dataset = Dataset.from_svmlight(path, chunk_rows=2)
    assert dataset.reading_options == {"zero_based": True}
    assert dataset.n_features == 4
    X, labels, _ = dataset.to_arrays()
    np.testing.assert_array_equal(labels, [1, 0, 1])
    assert sp.issparse(X)
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 0, 2], [0, 0, 1, 0], [0, 4, 0, 0]])
    wide = Dataset.from_svmlight(path, n_features=10, zero_based=True)
    assert wide.scan().n_features == 10
    assert [c.X.shape for c in wide.iter_chunks()] == [(3, 10)]
    one_based = Dataset.from_svmlight(path, zero_based=False)
    with pytest.raises(DataError, match=r"d\.svm, line 1: feature index 0 found in a one-based"):
        one_based.scan()
    with pytest.raises(ValueError, match="standard input can be read once"):
        Dataset.from_svmlight("-")


def test_a_changed_file_is_scanned_again(tmp_path: Path) -> None:
    path = tmp_path / "d.svm"
    path.write_text("1 1:1\n0 2:1\n")
    dataset = Dataset.from_svmlight(path, n_features=3, zero_based=False, chunk_rows=10)
    assert dataset.scan().n_samples == 2
    path.write_text("1 1:1\n0 2:1\n1 3:1\n")
    assert dataset.scan().n_samples == 3


def test_chunks_in_one_format() -> None:
    X, y, _ = _problem(m=100)
    mixed = Dataset.from_chunks([(X[:50], y[:50]), (X[50:].toarray(), y[50:])])
    with pytest.raises(TypeError, match="chunk 1 is dense but the chunks before it are sparse"):
        mixed.scan()


def test_bad_values_in_a_chunk_name_the_chunk_row_and_column() -> None:
    X, y, _ = _problem(m=100)
    bad = X[50:].copy()
    bad.data[bad.indptr[3]] = np.nan
    column = int(bad.indices[bad.indptr[3]])
    dataset = Dataset.from_chunks([(X[:50], y[:50]), (bad, y[50:])])
    with pytest.raises(
        ValueError, match=rf"chunk 1, rows from 50\) contains NaN at row 3, column {column}"
    ):
        dataset.scan()


# --------------------------------------------------------------------------- .npz files
def test_npz_files_read_and_streamed(tmp_path: Path) -> None:
    X, y, w = _problem(m=500, seed=5)
    for name, matrix, compressed in [
        ("csr.npz", X, True),
        ("csr_stored.npz", X, False),
        ("csc.npz", X.tocsc(), True),
        ("coo.npz", X.tocoo(), True),
    ]:
        sp.save_npz(tmp_path / name, matrix, compressed=compressed)
        np.save(tmp_path / "y.npy", y)
        whole = read_data(tmp_path / name, target=tmp_path / "y.npy")
        assert sp.isspmatrix_csr(whole.X), name
        assert whole.X.has_canonical_format
        assert (whole.X != X).nnz == 0, name
        np.testing.assert_array_equal(whole.y, y)
        chunks = list(iter_batches(tmp_path / name, target=tmp_path / "y.npy", chunk_rows=120))
        assert [c.n_rows for c in chunks] == [120] * 4 + [20]
        assert (sp.vstack([c.X for c in chunks]) != X).nnz == 0, name
        np.testing.assert_array_equal(np.concatenate([c.y for c in chunks]), y)
    # Labels and weights may be arrays of the archive itself.
    np.savez(
        tmp_path / "own.npz",
        data=X.data,
        indices=X.indices,
        indptr=X.indptr,
        shape=np.array(X.shape),
        format=np.array(b"csr"),
        y=y,
        w=w,
    )
    table = read_data(tmp_path / "own.npz", weight_column="w")
    np.testing.assert_array_equal(table.y, y)  # "y" by default
    np.testing.assert_array_equal(table.weights, w)


def test_npz_refusals_name_the_row(tmp_path: Path) -> None:
    def archive(name: str, data: list[float], indices: list[int], indptr: list[int]) -> Path:
        path = tmp_path / name
        np.savez(
            path,
            data=np.array(data),
            indices=np.array(indices),
            indptr=np.array(indptr),
            shape=np.array([3, 4]),
            format=np.array(b"csr"),
        )
        return path

    cases = [
        (
            archive("nan.npz", [1, 2, np.inf], [0, 1, 3], [0, 1, 2, 3]),
            "row 2 holds inf in column 3",
        ),
        (
            archive("range.npz", [1, 2, 3], [0, 4, 1], [0, 1, 2, 3]),
            "row 1 holds the column index 4",
        ),
        (
            archive("order.npz", [1, 2, 3], [0, 1, 1], [0, 2, 1, 3]),
            "indptr is out of order at row 1",
        ),
    ]
    for path, message in cases:
        with pytest.raises(DataError, match=message):
            read_data(path)
        with pytest.raises(DataError, match=message):
            list(iter_batches(path, chunk_rows=1))
    np.save(tmp_path / "short.npy", np.zeros(2))
    with pytest.raises(ValueError, match=r"has 3 rows but .*short\.npy has 2 entries"):
        Dataset.from_npz(tmp_path / "nan.npz", tmp_path / "short.npy")
    np.savez(tmp_path / "dense.npz", X=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"not a sparse matrix of scipy\.sparse\.save_npz"):
        Dataset.from_npz(tmp_path / "dense.npz", tmp_path / "short.npy")


# --------------------------------------------------------------------------- the fit's machinery
def test_minibatch_on_csr_chunks_draws_the_batches_of_the_dense_chunks() -> None:
    X, y, _ = _problem(m=600, seed=6)
    params = {"solver": "minibatch", "max_iter": 4, "random_state": 0, "early_stopping": True}
    with pytest.warns(match="failed to converge"):
        sparse = _model(**params).fit(Dataset.from_arrays(X, y, chunk_rows=100))
    with pytest.warns(match="failed to converge"):
        dense = _model(**params).fit(Dataset.from_arrays(X.toarray(), y, chunk_rows=100))
    # The same held-out chunks and one window of every row: the same batches.
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-10, atol=1e-12)


def test_digest_of_csr_chunks_tells_data_apart() -> None:
    X, y, _ = _problem(m=300, seed=7)
    spec = _model()._spec()
    digests = []
    for values in (X, X * 2.0, X):
        source = DatasetSource(Dataset.from_arrays(values, y, chunk_rows=64), spec)
        digests.append(source.digest())
    assert digests[0] == digests[2]
    assert digests[0] != digests[1]


@pytest.mark.filterwarnings("ignore::gpulogreg.inference.InferenceWarning")
def test_inference_on_csr_chunks_equals_the_dense_inference() -> None:
    X, y, _ = _problem(m=800, n=6, seed=8)
    model = _model().fit(X.toarray(), y)
    dense = model.inference(X.toarray(), y)
    chunked = model.inference(Dataset.from_arrays(X, y, chunk_rows=150))
    np.testing.assert_allclose(chunked.bse, dense.bse, rtol=1e-8)


def test_a_wide_svmlight_dataset_is_never_densified(tmp_path: Path) -> None:
    """500,000 features, 1,200 rows: a dense chunk would take gigabytes, the fit megabytes."""
    rng = np.random.default_rng(9)
    n, m, per_row = 500_000, 1_200, 8
    lines = []
    for i in range(m):
        ids = np.sort(rng.choice(n, per_row, replace=False)) + 1
        lines.append(f"{i % 2} " + " ".join(f"{j}:1" for j in ids))
    lines.append(f"0 {n}:1")  # the width
    path = tmp_path / "wide.svm"
    path.write_text("\n".join(lines) + "\n")
    dataset = Dataset.from_svmlight(path, chunk_rows=300)
    assert dataset.scan().n_features == n
    model = LogisticRegression(backend=BACKEND, solver="lbfgs", max_iter=5, tol=1e-30)
    tracemalloc.start()
    try:
        with pytest.warns(match="failed to converge"):
            model.fit(dataset)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    vector = 8 * n
    # L-BFGS keeps 2 x its memory of vectors, the objective a few more; one dense
    # 300-row chunk alone would be 300 x vector.
    assert peak < 40 * vector, peak / 1e6
    assert model.coef_.shape == (1, n)


@pytest.fixture
def emulated_gpu_chunks(emulated_kernels: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``device="gpu"`` on a Dataset: the chunked backend's code with the CUDA CSR kernels
    emulated on the host (``tests/_cuda_emulator.py``), chunks and vectors in host memory."""
    from gpulogreg import backends
    from gpulogreg.backends import chunked, cupy_backend

    monkeypatch.setattr(backends, "gpu_status", lambda: (True, ""))
    monkeypatch.setattr(backends, "to_device", lambda a, device: a)
    monkeypatch.setattr(cupy_backend, "_kernels_for", lambda a: emulated_kernels)
    monkeypatch.setattr(
        cupy_backend, "_current_device_memory", lambda: (2**40, 2**40, "emulated GPU")
    )
    monkeypatch.setattr(chunked, "device_namespace", lambda device: np)

    def no_pinned_buffers(*args: Any) -> Any:
        raise AssertionError("CSR chunks were given dense pinned staging buffers")

    monkeypatch.setattr(chunked, "make_device_stager", no_pinned_buffers)
    emulated_kernels.calls.clear()
    return emulated_kernels


def test_csr_chunks_on_the_gpu_are_moved_one_by_one_never_densified(
    emulated_gpu_chunks: Any, tmp_path: Path
) -> None:
    X, y, _ = _problem(m=700, n=12, seed=10)
    path = tmp_path / "d.svm"
    path.write_text(_svmlight_text(X, y))
    cpu = _model(backend="numpy", tol=1e-10).fit(Dataset.from_svmlight(path, chunk_rows=200))
    gpu = LogisticRegression(device="gpu", C=0.5, tol=1e-10, max_iter=500)
    gpu.fit(Dataset.from_svmlight(path, chunk_rows=200))
    assert gpu.backend_ == "chunked(cupy)"
    assert any("csr" in entry for entry, _ in emulated_gpu_chunks.calls)
    scale = np.abs(cpu.coef_).max()
    np.testing.assert_allclose(gpu.coef_, cpu.coef_, rtol=0, atol=1e-7 * scale)
