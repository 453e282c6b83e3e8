"""Readers and writers: CSV, Parquet, .npy/.npz; atomic output files (svmlight: test_svmlight)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from gpulogreg.io import (
    DataError,
    MissingDependencyError,
    atomic_write,
    column_names,
    detect_format,
    iter_batches,
    read_data,
    write_predictions,
)

pa = pytest.importorskip("pyarrow")
pcsv = pytest.importorskip("pyarrow.csv")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def frame(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = 300
    return {
        "row_id": np.arange(1000, 1000 + n),
        "a": rng.normal(size=n),
        "b": rng.integers(-5, 5, size=n),
        "c": rng.normal(size=n).astype(np.float32),
        "label": np.where(rng.random(n) < 0.4, "spam", "ham"),
    }


def _write(path: os.PathLike[str] | str, columns: dict[str, object]) -> str:
    table = pa.table(columns)
    path = str(path)
    if path.endswith(".csv"):
        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_table_reader_selects_and_orders_columns(tmp_path, frame, ext):
    path = _write(tmp_path / f"d{ext}", frame)
    table = read_data(path, target="label", features="c,a", id_column="row_id")
    assert table.feature_names == ["c", "a"]
    assert table.X.flags.c_contiguous
    assert table.X.dtype == np.float64
    np.testing.assert_array_equal(table.X[:, 1], frame["a"])
    # CSV holds float32 values in their shortest decimal form: equal to float32 rounding.
    np.testing.assert_array_equal(table.X[:, 0].astype(np.float32), frame["c"])
    np.testing.assert_array_equal(table.y, frame["label"])
    assert table.y.dtype.kind == "U"  # strings, never an object array
    np.testing.assert_array_equal(table.ids, frame["row_id"])


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_column_names(tmp_path, frame, ext):
    path = _write(tmp_path / f"d{ext}", frame)
    assert column_names(path) == ["row_id", "a", "b", "c", "label"]


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_default_features_are_all_but_target_and_id(tmp_path, frame, ext):
    path = _write(tmp_path / f"d{ext}", frame)
    table = read_data(path, target="label", id_column="row_id", dtype="float32")
    assert table.feature_names == ["a", "b", "c"]
    assert table.X.dtype == np.float32
    np.testing.assert_array_equal(table.X[:, 1], frame["b"].astype(np.float32))


def test_parquet_float32_stays_float32(tmp_path, rng):
    X = rng.normal(size=(50, 3)).astype(np.float32)
    path = _write(tmp_path / "f.parquet", {f"x{j}": X[:, j] for j in range(3)})
    table = read_data(path)
    assert table.X.dtype == np.float32
    np.testing.assert_array_equal(table.X, X)


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_non_numeric_feature_is_named(tmp_path, frame, ext):
    frame = dict(frame, city=np.array(["Paris", "Rome", "Oslo"] * 100))
    path = _write(tmp_path / f"d{ext}", frame)
    with pytest.raises(DataError, match="column 'city' is not numeric"):
        read_data(path, target="label")


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_missing_column_is_named(tmp_path, frame, ext):
    path = _write(tmp_path / f"d{ext}", frame)
    with pytest.raises(DataError, match="target column 'nope' not found"):
        read_data(path, target="nope")
    with pytest.raises(DataError, match="feature column 'zz' not found"):
        read_data(path, target="label", features=["a", "zz"])


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_nan_and_missing_values_name_column_and_row(tmp_path, frame, ext):
    a = frame["a"].copy()
    a[17] = np.nan
    path = _write(tmp_path / f"d{ext}", dict(frame, a=a))
    # CSV reads "nan" as a missing value; Parquet keeps the NaN.
    with pytest.raises(DataError, match=r"column 'a' (has a missing value|contains nan) at row 17"):
        read_data(path, target="label")
    b = pa.array([*frame["b"].tolist()[:5], None, *frame["b"].tolist()[6:]])
    path = _write(tmp_path / f"e{ext}", dict(frame, b=b))
    with pytest.raises(DataError, match="column 'b' has a missing value at row 5"):
        read_data(path, target="label")


def test_infinity_in_csv_is_refused(tmp_path):
    path = tmp_path / "inf.csv"
    path.write_text("x,y\n1.0,0\ninf,1\n")
    with pytest.raises(DataError, match="column 'x' contains inf at row 1"):
        read_data(path, target="y")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_data(tmp_path / "nope.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="directory"):
        read_data(tmp_path / "dir.csv")


def test_empty_and_header_only_csv(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_data(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b,y\n")
    with pytest.raises(DataError, match="no rows"):
        read_data(tmp_path / "header.csv", target="y")


def test_unknown_extension():
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format("data.xlsx")
    assert detect_format("D.CSV") == "csv"
    assert detect_format("x.csv.gz") == "csv"
    assert detect_format("x.bin", "npy") == "npy"


def test_npy_is_memory_mapped_and_not_copied(tmp_path, rng):
    X = rng.normal(size=(40, 3)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    table = read_data(tmp_path / "X.npy")
    assert isinstance(table.X, np.memmap)
    np.testing.assert_array_equal(table.X, X)
    # A target column by index, or labels in their own file.
    table = read_data(tmp_path / "X.npy", target="-1")
    np.testing.assert_array_equal(table.y, X[:, -1])
    np.testing.assert_array_equal(table.X, X[:, :2])
    np.save(tmp_path / "y.npy", np.arange(40) % 2)
    table = read_data(tmp_path / "X.npy", target=str(tmp_path / "y.npy"))
    assert table.X.shape == (40, 3)
    np.testing.assert_array_equal(table.y, np.arange(40) % 2)


def test_npy_nan_and_bad_shape(tmp_path):
    X = np.ones((5, 2))
    X[3, 1] = np.inf
    np.save(tmp_path / "bad.npy", X)
    with pytest.raises(DataError, match="column 1 contains inf at row 3"):
        read_data(tmp_path / "bad.npy")
    np.save(tmp_path / "one.npy", np.ones(5))
    with pytest.raises(DataError, match="2-D"):
        read_data(tmp_path / "one.npy")


def test_npz_default_names_and_pickle_refused(tmp_path, rng):
    X = rng.normal(size=(20, 2))
    y = np.arange(20) % 2
    np.savez(tmp_path / "d.npz", X=X, y=y)
    table = read_data(tmp_path / "d.npz")
    np.testing.assert_array_equal(table.X, X)
    np.testing.assert_array_equal(table.y, y)
    np.savez(tmp_path / "obj.npz", X=X, y=np.array([{"a": 1}] * 20, dtype=object))
    with pytest.raises(DataError, match="refused"):
        read_data(tmp_path / "obj.npz")


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_iter_batches_equals_read_data(tmp_path, frame, ext):
    path = _write(tmp_path / f"d{ext}", frame)
    whole = read_data(path, target="label", id_column="row_id")
    chunks = list(iter_batches(path, target="label", id_column="row_id", chunk_rows=64))
    assert [c.n_rows for c in chunks] == [64, 64, 64, 64, 44]
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), whole.X)
    np.testing.assert_array_equal(np.concatenate([c.y for c in chunks]), whole.y)
    np.testing.assert_array_equal(np.concatenate([c.ids for c in chunks]), whole.ids)


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".npy"])
def test_id_and_weight_columns_are_separate_roles(tmp_path, frame, ext):
    if ext == ".npy":
        columns = np.column_stack([frame["row_id"], frame["a"], frame["b"], frame["c"]])
        np.save(tmp_path / "d.npy", columns)
        path, target, row_id, weight = str(tmp_path / "d.npy"), None, "0", "2"
    else:
        path, target, row_id, weight = _write(tmp_path / f"d{ext}", frame), "label", "row_id", "b"
    roles = {"target": target, "id_column": row_id, "weight_column": weight}
    whole = read_data(path, **roles)
    assert len(whole.feature_names) == 2  # "a" and "c": the id and the weight are no features
    np.testing.assert_array_equal(whole.ids, frame["row_id"])
    np.testing.assert_array_equal(whole.weights, frame["b"])
    chunks = list(iter_batches(path, **roles, chunk_rows=64))
    np.testing.assert_array_equal(np.concatenate([c.weights for c in chunks]), whole.weights)
    np.testing.assert_array_equal(np.concatenate([c.ids for c in chunks]), whole.ids)


def test_iter_batches_reports_rows_of_the_whole_file(tmp_path, frame):
    a = frame["a"].copy()
    a[250] = np.nan
    path = _write(tmp_path / "d.parquet", dict(frame, a=a))
    with pytest.raises(DataError, match="row 250"):
        list(iter_batches(path, target="label", chunk_rows=64))


def test_iter_batches_npy_slices_the_map(tmp_path, rng):
    X = rng.normal(size=(100, 3))
    np.save(tmp_path / "X.npy", X)
    chunks = list(iter_batches(tmp_path / "X.npy", chunk_rows=30))
    assert [c.n_rows for c in chunks] == [30, 30, 30, 10]
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), X)


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_write_predictions_round_trip(tmp_path, ext):
    path = tmp_path / f"p{ext}"
    cols = {
        "id": np.array(["a", "b", "c"]),
        "prediction": np.array([1, 0, 1]),
        "proba_1": np.array([0.9, 0.1 + 1e-17, 1 / 3]),
    }
    write_predictions(path, cols)
    table = pcsv.read_csv(path) if ext == ".csv" else pq.read_table(path)
    assert table.column_names == ["id", "prediction", "proba_1"]
    assert table.column("id").to_pylist() == ["a", "b", "c"]
    np.testing.assert_array_equal(table.column("proba_1").to_numpy(), cols["proba_1"])
    with pytest.raises(DataError, match="must end in"):
        write_predictions(tmp_path / "p.json", cols)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old contents")

    class BoomError(Exception):
        pass

    def write_half() -> None:
        with atomic_write(target) as f:
            f.write(b"half")
            raise BoomError

    with pytest.raises(BoomError):
        write_half()
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    mask = os.umask(0)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)
    with (
        pytest.raises(FileNotFoundError, match="output directory does not exist"),
        atomic_write(tmp_path / "no" / "such" / "dir.bin"),
    ):
        pass


def test_missing_pyarrow_gives_a_clear_message(tmp_path, monkeypatch):
    (tmp_path / "d.csv").write_text("a,y\n1,0\n2,1\n")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'gpulogreg\[io\]'"):
        read_data(tmp_path / "d.csv", target="y")


# ------------------------------------------------ both CSV readers read a file alike
def _labels_file(path, n: int, bad_row: int, bad: str) -> str:
    """A CSV of ``n`` rows, integer labels 0/1 except ``bad`` at ``bad_row``."""
    rows = [f"{0.5 * i},{i % 3}.25,{bad if i == bad_row else i % 2}" for i in range(n)]
    path.write_text("a,b,y\n" + "\n".join(rows) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("n", "bad_row", "bad"), [(300_000, 250_000, "yes"), (200_000, 199_999, "2.5")]
)
def test_in_memory_and_streaming_csv_readers_refuse_a_stray_label_alike(tmp_path, n, bad_row, bad):
    # The case: one label 'yes' far down a column of integers; the
    # in-memory reader used to infer strings from the whole column (three
    # classes), the streaming one int64 from its first block (a refusal).
    path = _labels_file(tmp_path / "d.csv", n, bad_row, bad)
    message = rf"column 'y' holds '{bad}' at row {bad_row}, but its first rows read as int64"
    with pytest.raises(DataError, match=message):
        read_data(path, target="y")
    with pytest.raises(DataError, match=message):
        list(iter_batches(path, target="y", chunk_rows=50_000))


def test_string_labels_everywhere_read_alike(tmp_path):
    # Labels that are strings from the first row on are strings in both readers,
    # even where a later label looks like a number.
    labels = ["cat", "dog"] * 40_000 + ["3"]
    path = tmp_path / "s.csv"
    path.write_text("a,y\n" + "\n".join(f"{i},{s}" for i, s in enumerate(labels)) + "\n")
    whole = read_data(path, target="y")
    streamed = np.concatenate([t.y for t in iter_batches(path, target="y", chunk_rows=10_000)])
    np.testing.assert_array_equal(whole.y, np.asarray(labels))
    np.testing.assert_array_equal(streamed, whole.y)


def test_empty_string_label_is_a_missing_value(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("a,y\n1,cat\n2,\n3,dog\n")
    for read in (lambda: read_data(path, target="y"), lambda: list(iter_batches(path, target="y"))):
        with pytest.raises(DataError, match="column 'y' has a missing value at row 1"):
            read()


def test_weights_are_read_as_floats_whatever_their_first_rows(tmp_path):
    # Integer weights in the first block and a fractional one far below: a
    # weight column is float64, in both readers.
    n = 200_000
    path = tmp_path / "w.csv"
    weights = np.ones(n)
    weights[-1] = 0.5
    rows = (f"{i},{'0.5' if i == n - 1 else '1'},{i % 2}" for i in range(n))
    path.write_text("a,w,y\n" + "\n".join(rows) + "\n")
    whole = read_data(path, target="y", weight_column="w")
    chunks = iter_batches(path, target="y", weight_column="w")
    streamed = np.concatenate([t.weights for t in chunks])
    np.testing.assert_array_equal(whole.weights, weights)
    np.testing.assert_array_equal(streamed, weights)


@pytest.mark.parametrize("row", [3, 150_001])
def test_non_numeric_csv_value_names_column_and_row(tmp_path, row):
    n = 150_002
    path = tmp_path / "d.csv"
    path.write_text(
        "a,b,y\n" + "\n".join(f"{i},{'n/a?' if i == row else i},{i % 2}" for i in range(n)) + "\n"
    )
    message = rf"column 'b' is not numeric \(value 'n/a\?' at row {row}\)"
    with pytest.raises(DataError, match=message):
        read_data(path, target="y")
    with pytest.raises(DataError, match=message):
        list(iter_batches(path, target="y"))


@pytest.mark.parametrize("ext", [".csv", ".parquet"])
def test_duplicate_column_names_are_refused_naming_the_file(tmp_path, ext):
    path = str(tmp_path / f"dup{ext}")
    table = pa.table([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [0, 1]], names=["a", "b", "a", "y"])
    pcsv.write_csv(table, path) if ext == ".csv" else pq.write_table(table, path)
    message = rf"{path}: column name 'a' appears 2 times"
    with pytest.raises(DataError, match=message):
        read_data(path, target="y")
    with pytest.raises(DataError, match=message):
        list(iter_batches(path, target="y"))
    # Columns not in doubt still read.
    assert read_data(path, target="y", features="b").feature_names == ["b"]
