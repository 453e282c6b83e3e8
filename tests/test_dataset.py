"""Out-of-core data: Dataset sources, the chunked backend, exact full-batch fits from disk."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest

from gpulogreg import Dataset, LogisticRegression
from gpulogreg.backends import make_backend
from gpulogreg.backends.chunked import ChunkedBackend
from gpulogreg.data.pipeline import HostStager, SlotPipeline
from tests._helpers import make_classification

#: Relative agreement of out-of-core and in-memory coefficients (float64).
RTOL = 1e-6


def _params(model: LogisticRegression) -> np.ndarray:
    return np.concatenate([model.coef_.ravel(), model.intercept_.ravel()])


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture
def binary() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(3000, 6, seed=4, ill_conditioned=True)


@pytest.fixture
def npy_files(tmp_path, binary):  # type: ignore[no-untyped-def]
    X, y = binary
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "X.npy", tmp_path / "y.npy"


# --------------------------------------------------------------------------- sources
def test_from_npy_reads_every_row_in_chunks(npy_files, binary) -> None:  # type: ignore[no-untyped-def]
    X, y = binary
    ds = Dataset.from_npy(*npy_files, chunk_rows=700)
    chunks = list(ds.iter_chunks())
    assert [c.X.shape[0] for c in chunks] == [700, 700, 700, 700, 200]
    assert [c.start for c in chunks] == [0, 700, 1400, 2100, 2800]
    Xr, yr, sw = ds.to_arrays()
    np.testing.assert_array_equal(Xr, X)
    np.testing.assert_array_equal(yr, y)
    assert sw is None
    info = ds.scan()
    assert info.n_samples == 3000
    assert info.n_chunks == 5
    np.testing.assert_array_equal(info.classes, [0, 1])
    np.testing.assert_array_equal(info.class_counts, np.bincount(y))


def test_random_access_reads_chunks_in_any_order(npy_files, binary, tmp_path) -> None:  # type: ignore[no-untyped-def]
    X, y = binary
    for ds in (
        Dataset.from_npy(*npy_files, chunk_rows=700),
        Dataset.from_arrays(X, y, chunk_rows=700),
    ):
        assert ds.random_access
        chunks = list(ds.iter_chunks(order=[4, 0, 2]))
        assert [c.start for c in chunks] == [2800, 0, 1400]
        np.testing.assert_array_equal(chunks[0].X, X[2800:])
        np.testing.assert_array_equal(chunks[2].y, y[1400:2100])
    sequential = Dataset.from_chunks([(X, y)])
    assert not sequential.random_access
    with pytest.raises(ValueError, match="only in order"):
        list(sequential.iter_chunks(order=[0]))


def test_from_npy_converts_dtype_and_fortran_order(tmp_path, binary) -> None:  # type: ignore[no-untyped-def]
    X, y = binary
    np.save(tmp_path / "Xf.npy", np.asfortranarray(X))
    np.save(tmp_path / "Xi.npy", (X * 10).astype(np.int32))
    np.save(tmp_path / "y.npy", y)
    ds = Dataset.from_npy(tmp_path / "Xf.npy", tmp_path / "y.npy", chunk_rows=1000, dtype="float32")
    Xr, _, _ = ds.to_arrays()
    assert Xr.dtype == np.float32
    np.testing.assert_array_equal(Xr, X.astype(np.float32))
    ds = Dataset.from_npy(tmp_path / "Xi.npy", tmp_path / "y.npy", chunk_rows=1000)
    assert ds.working_dtype() == np.float64
    Xr, _, _ = ds.to_arrays()
    np.testing.assert_array_equal(Xr, (X * 10).astype(np.int32).astype(np.float64))


def test_from_npy_with_weights(tmp_path, binary) -> None:  # type: ignore[no-untyped-def]
    X, y = binary
    w = np.random.default_rng(0).uniform(0.5, 2, len(y))
    for name, a in (("X", X), ("y", y), ("w", w)):
        np.save(tmp_path / f"{name}.npy", a)
    ds = Dataset.from_npy(
        tmp_path / "X.npy",
        tmp_path / "y.npy",
        sample_weight_path=tmp_path / "w.npy",
        chunk_rows=999,
    )
    info = ds.scan()
    np.testing.assert_allclose(info.class_weight_sums, np.bincount(y, weights=w))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, X, y: (np.save(p / "a.npy", X), np.save(p / "b.npy", y[:-1])), "rows"),
        (lambda p, X, y: (np.save(p / "a.npy", X[:, 0]), np.save(p / "b.npy", y)), "2-D"),
        (lambda p, X, y: (np.save(p / "a.npy", X), np.save(p / "b.npy", X)), "1-D"),
    ],
)
def test_from_npy_rejects_bad_files(tmp_path, binary, make, message) -> None:  # type: ignore[no-untyped-def]
    make(tmp_path, *binary)
    with pytest.raises(ValueError, match=message):
        Dataset.from_npy(tmp_path / "a.npy", tmp_path / "b.npy")


def test_missing_file_and_not_npy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError):
        Dataset.from_npy(tmp_path / "nope.npy", tmp_path / "y.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match=r"not a \.npy"):
        Dataset.from_npy(tmp_path / "junk.npy", tmp_path / "junk.npy")


def test_scan_finds_nan_with_its_position(tmp_path, binary) -> None:  # type: ignore[no-untyped-def]
    X, y = binary
    X = X.copy()
    X[1234, 3] = np.nan
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    ds = Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy", chunk_rows=1000)
    with pytest.raises(ValueError, match=r"chunk 1, rows from 1000.*row 234, column 3"):
        ds.scan()


def test_scan_is_cached_and_redone_when_the_file_changes(npy_files, binary) -> None:  # type: ignore[no-untyped-def]
    _, y = binary
    ds = Dataset.from_npy(*npy_files, chunk_rows=1000)
    first = ds.scan()
    assert ds.scan() is first
    time.sleep(0.01)
    np.save(npy_files[1], np.where(y == 1, 5, 0))
    again = ds.scan()
    assert again is not first
    np.testing.assert_array_equal(again.classes, [0, 5])


def test_from_chunks_list_and_factory(binary) -> None:
    X, y = binary
    parts = [(X[i : i + 1000], y[i : i + 1000]) for i in range(0, 3000, 1000)]
    ds = Dataset.from_chunks(parts)
    assert ds.scan().n_samples == 3000
    assert ds.scan().n_chunks == 3

    def factory():  # type: ignore[no-untyped-def]
        yield from parts

    ds2 = Dataset.from_chunks(factory)
    np.testing.assert_array_equal(ds2.to_arrays()[0], X)
    with pytest.raises(TypeError, match="one-shot iterator"):
        Dataset.from_chunks(factory())


def test_from_chunks_rejects_inconsistent_chunks(binary) -> None:
    X, y = binary
    ds = Dataset.from_chunks([(X[:100], y[:100]), (X[100:200, :3], y[100:200])])
    with pytest.raises(ValueError, match="3 features, expected 6"):
        ds.scan()
    ds = Dataset.from_chunks([(X[:100], y[:99])])
    with pytest.raises(ValueError, match="100 rows of X"):
        ds.scan()
    ds = Dataset.from_chunks([X[:100]])
    with pytest.raises(TypeError, match="must be a tuple"):
        ds.scan()


def test_classes_given_rejects_unknown_labels(binary) -> None:
    X, y = binary
    ds = Dataset.from_arrays(X, y, classes=[0, 7], chunk_rows=500)
    with pytest.raises(ValueError, match="not in classes"):
        ds.scan()


def _write_tables(tmp_path, X, y, w=None):  # type: ignore[no-untyped-def]
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from pyarrow import csv

    cols = {f"f{j}": X[:, j] for j in range(X.shape[1])}
    cols["label"] = np.where(y == 1, "yes", "no")
    if w is not None:
        cols["w"] = w
    table = pa.table(cols)
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=700)
    csv.write_csv(table, tmp_path / "d.csv")
    return tmp_path / "d.parquet", tmp_path / "d.csv"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_table_files_round_trip(tmp_path, binary, fmt) -> None:  # type: ignore[no-untyped-def]
    X, y = binary
    w = np.random.default_rng(1).uniform(0.5, 2, len(y))
    pq_path, csv_path = _write_tables(tmp_path, X, y, w)
    make = Dataset.from_parquet if fmt == "parquet" else Dataset.from_csv
    path = pq_path if fmt == "parquet" else csv_path
    ds = make(path, target="label", weight="w", chunk_rows=800)
    Xr, yr, wr = ds.to_arrays()
    np.testing.assert_allclose(Xr, X, rtol=1e-15)
    np.testing.assert_array_equal(yr, np.where(y == 1, "yes", "no"))
    np.testing.assert_allclose(wr, w, rtol=1e-15)
    assert list(ds.feature_names) == [f"f{j}" for j in range(6)]
    assert ds.scan().chunk_rows == [800, 800, 800, 600]
    sub = make(path, target="label", features="f2,f0", chunk_rows=800)
    np.testing.assert_allclose(sub.to_arrays()[0], X[:, [2, 0]], rtol=1e-15)
    with pytest.raises(ValueError, match="not found"):
        make(path, target="nope")


# --------------------------------------------------------------------------- chunked backend
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("prefetch", [True, False])
def test_chunked_backend_sums_equal_in_memory(n_classes: int, prefetch: bool) -> None:
    X, y = make_classification(2500, 5, n_classes=n_classes, seed=2)
    w = np.random.default_rng(3).uniform(0.1, 3.0, len(y))
    ds = Dataset.from_arrays(X, y, w, chunk_rows=600)
    cb = ChunkedBackend(ds, backend="numpy", class_weight="balanced", prefetch=prefetch)
    counts = np.bincount(y, weights=w)
    s = w * (w.sum() / (n_classes * counts))[y]
    assert cb.weight_sum == pytest.approx(s.sum())
    ref = make_backend(X, y.astype(np.int32), s / s.sum(), n_classes=n_classes, backend="numpy")
    rng = np.random.default_rng(0)
    p = rng.normal(size=cb.n_params)
    v = rng.normal(size=cb.n_params)
    loss, grad = cb.loss_grad(p)
    loss_ref, grad_ref = ref.loss_grad(p)
    assert loss == pytest.approx(loss_ref, rel=1e-13)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-12, atol=1e-15)
    assert cb.loss(p) == pytest.approx(loss_ref, rel=1e-13)
    np.testing.assert_allclose(cb.hessian(p), ref.hessian(p), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cb.hvp(p, v), ref.hvp(p, v), rtol=1e-12, atol=1e-15)
    g = rng.normal(size=6)
    np.testing.assert_allclose(cb.gram_matvec(g), ref.gram_matvec(g), rtol=1e-12, atol=1e-15)
    assert cb.n_passes == 5


def test_chunked_backend_one_vs_rest_target() -> None:
    X, y = make_classification(900, 4, n_classes=3, seed=5)
    cb = ChunkedBackend(
        Dataset.from_arrays(X, y, chunk_rows=200), positive_class=2, backend="numpy"
    )
    assert cb.n_outputs == 1
    ref = make_backend(X, (y == 2).astype(np.int32), np.full(900, 1 / 900), backend="numpy")
    p = np.arange(5.0) / 10
    np.testing.assert_allclose(cb.loss_grad(p)[1], ref.loss_grad(p)[1], rtol=1e-12)


# --------------------------------------------------------------------------- pipeline
class _FakeDeviceStager:
    """Stands in for PinnedStager: checks the slot protocol a GPU relies on."""

    def __init__(self, n_slots: int = 2) -> None:
        self.n_slots = n_slots
        self.in_use = [False] * n_slots
        self.staged = [False] * n_slots
        self.log: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def stage(self, slot: int, item: object) -> object:
        with self.lock:
            assert not self.in_use[slot], "a slot was refilled while the compute side used it"
            assert not self.staged[slot], "a staged slot was overwritten before it was consumed"
            self.staged[slot] = True
            self.log.append(("stage", slot))
        return (slot, item)

    def acquire(self, slot: int, staged: object) -> object:
        with self.lock:
            assert self.staged[slot]
            self.staged[slot] = False
            self.in_use[slot] = True
            self.log.append(("acquire", slot))
        return staged

    def release(self, slot: int) -> None:
        with self.lock:
            self.in_use[slot] = False
            self.log.append(("release", slot))


@pytest.mark.parametrize("threaded", [True, False])
def test_slot_pipeline_order_and_slot_protocol(threaded: bool) -> None:
    stager = _FakeDeviceStager()
    out = []
    for slot, item in SlotPipeline(range(9), stager, prepare=lambda i: i * 10, threaded=threaded):
        # Let the reader run ahead as far as it may (on a busy machine it may
        # need a while to be scheduled).
        deadline = time.monotonic() + (5.0 if threaded and item == 0 else 0.001)
        while ("stage", 1) not in stager.log and time.monotonic() < deadline:
            time.sleep(0.001)
        out.append((slot, item))
    assert out == [(i % 2, i * 10) for i in range(9)]
    assert [e for e in stager.log if e[0] == "acquire"] == [("acquire", i % 2) for i in range(9)]
    if threaded:
        # double buffering: chunk i+1 was staged before chunk i was released
        first_release = stager.log.index(("release", 0))
        assert ("stage", 1) in stager.log[:first_release]


def test_slot_pipeline_propagates_reader_errors_and_stops_early() -> None:
    def items():  # type: ignore[no-untyped-def]
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(SlotPipeline(items(), HostStager()))
    consumed = []
    reader_done = threading.Event()

    def endless():  # type: ignore[no-untyped-def]
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            reader_done.set()

    for item in SlotPipeline(endless(), HostStager()):
        consumed.append(item)
        if item == 3:
            break
    assert consumed == [0, 1, 2, 3]


# --------------------------------------------------------------------------- exact fits from disk
def _fit_quiet(model: LogisticRegression, *args):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return model.fit(*args)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("solver", ["newton", "lbfgs", "gd"])
def test_npy_fit_equals_in_memory_fit(tmp_path, solver: str, backend: str) -> None:  # type: ignore[no-untyped-def]
    # Ill-conditioned data for the second-order methods; gd gets well-conditioned
    # data so that it reaches tol in a test's time.
    X, y = make_classification(3000, 6, seed=4, ill_conditioned=solver != "gd")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    kw = {"solver": solver, "tol": 1e-9, "max_iter": 100_000, "backend": backend, "C": 0.5}
    ref = _fit_quiet(LogisticRegression(**kw), X, y)
    ds = Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy", chunk_rows=700)
    model = _fit_quiet(LogisticRegression(**kw), ds)
    assert _rel(_params(model), _params(ref)) < RTOL
    assert model.backend_ == f"chunked({backend})"
    assert model.n_passes_ >= model.n_iter_[0]
    np.testing.assert_array_equal(model.classes_, ref.classes_)
    np.testing.assert_array_equal(model.predict(X), ref.predict(X))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_table_file_fit_equals_in_memory_fit(tmp_path, binary, fmt: str) -> None:  # type: ignore[no-untyped-def]
    X, y = binary
    w = np.random.default_rng(1).uniform(0.5, 2, len(y))
    pq_path, csv_path = _write_tables(tmp_path, X, y, w)
    kw = {"solver": "newton", "tol": 1e-10, "backend": "numpy", "class_weight": "balanced"}
    labels = np.where(y == 1, "yes", "no")
    ref = _fit_quiet(LogisticRegression(**kw), X, labels, w)
    make = Dataset.from_parquet if fmt == "parquet" else Dataset.from_csv
    ds = make(pq_path if fmt == "parquet" else csv_path, target="label", weight="w", chunk_rows=900)
    model = _fit_quiet(LogisticRegression(**kw), ds)
    assert _rel(_params(model), _params(ref)) < RTOL
    np.testing.assert_array_equal(model.classes_, ["no", "yes"])
    assert list(model.feature_names_in_) == [f"f{j}" for j in range(6)]


@pytest.mark.parametrize("multi_class", ["multinomial", "ovr"])
def test_multiclass_dataset_fit_equals_in_memory_fit(multi_class: str) -> None:
    X, y = make_classification(2000, 5, n_classes=3, seed=9)
    kw = {"solver": "lbfgs", "tol": 1e-9, "backend": "numpy", "multi_class": multi_class}
    ref = _fit_quiet(LogisticRegression(**kw), X, y)
    model = _fit_quiet(LogisticRegression(**kw), Dataset.from_arrays(X, y, chunk_rows=450))
    assert _rel(_params(model), _params(ref)) < RTOL


def test_float32_dataset_fit_close_to_in_memory_fit(npy_files, binary) -> None:  # type: ignore[no-untyped-def]
    X, y = binary
    kw = {"solver": "lbfgs", "tol": 1e-6, "backend": "numpy", "dtype": "float32"}
    ref = _fit_quiet(LogisticRegression(**kw), X, y)
    model = _fit_quiet(LogisticRegression(**kw), Dataset.from_npy(*npy_files, chunk_rows=512))
    assert _rel(_params(model), _params(ref)) < 1e-4


def test_fit_dataset_rejects_y_and_single_class(binary) -> None:
    X, y = binary
    ds = Dataset.from_arrays(X, y)
    with pytest.raises(ValueError, match="do not pass y"):
        LogisticRegression().fit(ds, y)
    with pytest.raises(ValueError, match="only 1 class"):
        LogisticRegression(backend="numpy").fit(Dataset.from_arrays(X, np.zeros(len(y))))


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs /proc")
def test_npy_reading_keeps_resident_memory_bounded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    n, d = 400_000, 50  # 80 MB of float32
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=(n, d))
    for i in range(0, n, 100_000):
        X[i : i + 100_000] = 1.0
    X.flush()
    del X
    np.save(tmp_path / "y.npy", np.arange(n) % 2)
    ds = Dataset.from_npy(tmp_path / "X.npy", tmp_path / "y.npy", chunk_rows=20_000)  # 4 MB
    before = _rss_bytes()
    peak = before
    total = 0.0
    for chunk in ds.iter_chunks():
        total += float(chunk.X[:, 0].sum())
        peak = max(peak, _rss_bytes())
    assert total == n
    assert peak - before < 40 * 2**20, f"resident memory grew by {(peak - before) / 2**20:.0f} MB"


# ----------------------------------------------------------------- pinned staging (fake CuPy)
class _FakeArray(np.ndarray):
    """A host array with CuPy's ``set(arr, stream=...)``."""

    def set(self, arr: np.ndarray, stream: object = None) -> None:
        assert stream is not None, "copies must go on the copy stream"
        assert getattr(stream, "non_blocking", False)
        self[...] = arr
        stream.log.append("copy")  # type: ignore[attr-defined]


class _FakeCuda:
    def __init__(self) -> None:
        self.log: list[str] = []
        log = self.log

        class Device:
            id = 0

            def __init__(self, *args: object) -> None:
                pass

            def __enter__(self) -> Device:
                return self

            def __exit__(self, *args: object) -> None:
                pass

        class Stream:
            def __init__(self, non_blocking: bool = False) -> None:
                self.non_blocking = non_blocking
                self.log = log

            def wait_event(self, event: object) -> None:
                assert event is not None
                log.append("wait")

        class Event:
            def __init__(self, disable_timing: bool = False) -> None:
                self.recorded = False

            def record(self, stream: object) -> None:
                self.recorded = True
                log.append("record")

            def synchronize(self) -> None:
                assert self.recorded
                log.append("sync")

        compute = Stream()
        self.Device, self.Stream, self.Event = Device, Stream, Event
        self.get_current_stream = lambda: compute


def test_pinned_stager_protocol_with_a_fake_cupy(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys
    import types

    from gpulogreg.backends.staging import PinnedStager

    cuda = _FakeCuda()
    cp = types.SimpleNamespace(
        cuda=cuda,
        int32=np.int32,
        float64=np.float64,
        empty=lambda shape, dtype: np.empty(shape, dtype=dtype).view(_FakeArray),
    )
    fake_cupyx = types.ModuleType("cupyx")
    fake_cupyx.empty_pinned = lambda shape, dtype: np.empty(shape, dtype=dtype)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cupyx", fake_cupyx)
    stager = PinnedStager(cp, max_rows=100, n_features=3, dtype=np.float32)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    items = [
        (
            rng.normal(size=(m, 3)).astype(np.float32),
            rng.integers(0, 2, m).astype(np.int32),
            rng.random(m),
        )
        for m in (100, 100, 100, 37)
    ]
    seen = []
    for X, y, s in SlotPipeline(items, stager):
        seen.append((np.array(X), np.array(y), np.array(s)))
    for (X, y, s), (Xs, ys, ss) in zip(items, seen, strict=True):
        np.testing.assert_array_equal(X, Xs)
        np.testing.assert_array_equal(y, ys)
        np.testing.assert_array_equal(s, ss)
    # every chunk: three copies and a record on the copy stream, a wait on the
    # compute stream before use; reused slots synchronise first
    assert cuda.log.count("copy") == 12
    assert cuda.log.count("wait") == 4
    assert cuda.log.count("sync") >= 4


def test_n_passes_counts_every_one_vs_rest_model() -> None:
    X, y = make_classification(1500, 4, n_classes=3, seed=6)
    ds = Dataset.from_arrays(X, y, chunk_rows=500)
    model = _fit_quiet(LogisticRegression(solver="lbfgs", multi_class="ovr", tol=1e-6), ds)
    # every model's passes: at least one per iteration (its evaluations), summed over classes
    assert model.n_passes_ >= int(model.n_iter_.sum())
    single = _fit_quiet(LogisticRegression(solver="lbfgs", multi_class="ovr", tol=1e-6), ds)
    assert single.n_passes_ == model.n_passes_  # deterministic
