"""Data as users store them: Parquet directories, hive partitions, globs, CSV variants.

Both readers (:func:`gpulogreg.io.read_data` whole, :func:`gpulogreg.io.iter_batches`
and :meth:`gpulogreg.Dataset.from_parquet` / ``from_csv`` in chunks) must read
these the same way and refuse the same things with the same messages.
"""

from __future__ import annotations

import bz2
import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest

from gpulogreg import Dataset, InputError
from gpulogreg.io import (
    DataError,
    column_names,
    data_files,
    detect_format,
    feature_columns,
    iter_batches,
    read_data,
)

pa = pytest.importorskip("pyarrow")
pcsv = pytest.importorskip("pyarrow.csv")
pq = pytest.importorskip("pyarrow.parquet")

N_ROWS = 500


@pytest.fixture
def frame(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Rows sorted by label, so that a dataset partitioned by label keeps their order."""
    label = np.sort(rng.integers(0, 2, size=N_ROWS))
    return {
        "row_id": np.arange(N_ROWS),
        "a": rng.normal(size=N_ROWS),
        "b": rng.normal(size=N_ROWS),
        "w": rng.uniform(0.5, 2.0, size=N_ROWS),
        "label": label,
    }


def _parts(frame: dict[str, np.ndarray], n_parts: int) -> list[dict[str, np.ndarray]]:
    n_rows = len(next(iter(frame.values())))
    bounds = np.linspace(0, n_rows, n_parts + 1).astype(int)
    return [{k: v[lo:hi] for k, v in frame.items()} for lo, hi in itertools.pairwise(bounds)]


def _hive(root: Path, frame: dict[str, np.ndarray]) -> Path:
    """``root/label=0/part-*.parquet`` ...: the label lives in the directory names only."""
    for value in (0, 1):
        keep = frame["label"] == value
        rows = {k: v[keep] for k, v in frame.items() if k != "label"}
        directory = root / f"label={value}"
        directory.mkdir(parents=True)
        for i, part in enumerate(_parts(rows, 3)):
            pq.write_table(pa.table(part), directory / f"part-{i}.parquet", row_group_size=40)
    (root / "_SUCCESS").write_text("")  # a marker of other tools: left out
    return root


def _glob_dir(root: Path, frame: dict[str, np.ndarray]) -> Path:
    root.mkdir()
    for i, part in enumerate(_parts(frame, 4)):
        pq.write_table(pa.table(part), root / f"part-{i:02d}.parquet", row_group_size=50)
    (root / ".part-00.parquet.crc").write_text("")  # hidden: left out
    return root


def _assert_same(table, reference) -> None:  # type: ignore[no-untyped-def]
    assert table.feature_names == reference.feature_names
    np.testing.assert_array_equal(table.X, reference.X)
    np.testing.assert_array_equal(table.y, reference.y)
    np.testing.assert_array_equal(table.weights, reference.weights)


@pytest.mark.parametrize("layout", ["hive", "directory", "glob", "recursive glob"])
def test_a_dataset_reads_like_the_single_file(tmp_path, frame, layout):
    single = tmp_path / "single.parquet"
    pq.write_table(pa.table(frame), single)
    if layout == "hive":
        source = str(_hive(tmp_path / "hive", frame))
    else:
        root = _glob_dir(tmp_path / "parts", frame)
        source = {
            "directory": str(root),
            "glob": str(root / "part-*.parquet"),
            "recursive glob": str(tmp_path / "**" / "part-*.parquet"),
        }[layout]
    options = {"target": "label", "weight_column": "w", "id_column": "row_id"}
    reference = read_data(single, **options)
    assert detect_format(source) == "parquet"
    _assert_same(read_data(source, **options), reference)
    chunks = list(iter_batches(source, chunk_rows=64, **options))
    assert [len(c.y) for c in chunks[:-1]] == [64] * (len(chunks) - 1)
    joined = type(reference)(
        X=np.concatenate([c.X for c in chunks]),
        y=np.concatenate([c.y for c in chunks]),
        feature_names=chunks[0].feature_names,
        weights=np.concatenate([c.weights for c in chunks]),
    )
    _assert_same(joined, reference)
    # The Dataset route (what streaming fits read) sees the same rows.
    ds = Dataset.from_parquet(source, target="label", weight="w", features="a,b", chunk_rows=100)
    X, y, w = ds.to_arrays()
    np.testing.assert_array_equal(X, reference.X)
    np.testing.assert_array_equal(y, reference.y)
    np.testing.assert_array_equal(w, reference.weights)


def test_hive_keys_are_columns_but_never_default_features(tmp_path, frame):
    root = _hive(tmp_path / "hive", frame)
    assert column_names(root) == ["row_id", "a", "b", "w", "label"]
    assert feature_columns(root, id_column="row_id") == ["a", "b", "w"]
    table = read_data(root, features="a,label", id_column="row_id")
    np.testing.assert_array_equal(table.X[:, 1], frame["label"])  # named: a feature
    assert table.y is None


def test_data_files_order_and_what_they_leave_out(tmp_path, frame):
    root = _hive(tmp_path / "hive", frame)
    files = data_files(root)
    assert files == sorted(files)
    assert all(Path(f).suffix == ".parquet" for f in files)
    assert data_files(root / "label=0" / "part-0.parquet") == [
        str(root / "label=0" / "part-0.parquet")
    ]


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("empty glob", FileNotFoundError, "nothing matches"),
        ("empty directory", DataError, "holds no data files"),
        ("csv directory", DataError, "read as a Parquet dataset, not as csv files"),
        ("unknown files", DataError, "cannot tell the format of the directory's files"),
        ("not parquet", DataError, "not a readable Parquet dataset"),
        ("missing column", DataError, "target column 'nope' not found"),
    ],
)
def test_dataset_refusals_are_the_same_for_all_readers(tmp_path, frame, case, error, message):
    root = tmp_path / "d"
    root.mkdir()
    target = "label"
    fmt = None
    source = str(root)
    if case == "empty glob":
        source = str(root / "*.parquet")
    elif case == "csv directory":
        pcsv.write_csv(pa.table(frame), root / "a.csv")
    elif case == "unknown files":
        (root / "part-0").write_bytes(b"PAR1")
    elif case == "not parquet":
        (root / "part-0.parquet").write_text("a,b\n1,2\n")
    elif case == "missing column":
        _glob_dir(root / "p", frame)
        target = "nope"
        fmt = "parquet"
    with pytest.raises(error, match=message):
        read_data(source, target=target, format=fmt)
    with pytest.raises(error, match=message):
        next(iter_batches(source, target=target, format=fmt))
    if case in ("csv directory", "unknown files"):
        message = "not a readable Parquet dataset"  # from_parquet names the format itself
    with pytest.raises(error, match=message):
        Dataset.from_parquet(source, target=target).scan()


def test_format_names_files_without_a_telling_extension(tmp_path, frame):
    root = tmp_path / "parts"
    root.mkdir()
    for i, part in enumerate(_parts(frame, 2)):
        pq.write_table(pa.table(part), root / f"part-{i}")
    pcsv.write_csv(pa.table(frame), tmp_path / "export.dat")
    reference = read_data(tmp_path / "export.dat", target="label", format="csv")
    table = read_data(root, target="label", format="parquet")
    np.testing.assert_array_equal(table.X, reference.X)
    np.testing.assert_array_equal(table.y, reference.y)
    for bad in (root, tmp_path / "export.dat"):
        with pytest.raises(DataError, match="cannot tell the format"):
            read_data(bad, target="label")


def _write_text(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    elif path.suffix == ".bz2":
        path.write_bytes(bz2.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _csv_text(frame: dict[str, np.ndarray], sep: str) -> str:
    names = ["a", "b", "label"]
    rows = [sep.join(names)]
    rows += [sep.join(repr(float(frame[n][i])) for n in names) for i in range(N_ROWS)]
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("name", ["d.csv.gz", "d.csv.bz2", "d.tsv", "d.tsv.gz", "d.tsv.bz2"])
def test_compressed_and_tab_separated_csv(tmp_path, frame, name):
    sep = "\t" if ".tsv" in name else ","
    path = _write_text(tmp_path / name, _csv_text(frame, sep))
    assert detect_format(path) == "csv"
    table = read_data(path, target="label")
    assert table.feature_names == ["a", "b"]
    np.testing.assert_array_equal(table.X[:, 0], frame["a"])
    chunks = list(iter_batches(path, target="label", chunk_rows=100))
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), table.X)
    ds = Dataset.from_csv(path, target="label", chunk_rows=100)
    np.testing.assert_array_equal(ds.to_arrays()[0], table.X)


def test_delimiter(tmp_path, frame):
    path = _write_text(tmp_path / "d.csv", _csv_text(frame, ";"))
    table = read_data(path, target="label", delimiter=";")
    np.testing.assert_array_equal(table.X[:, 1], frame["b"])
    chunks = list(iter_batches(path, target="label", chunk_rows=128, delimiter=";"))
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), table.X)
    assert column_names(path, delimiter=";") == ["a", "b", "label"]
    ds = Dataset.from_csv(path, target="label", delimiter=";")
    np.testing.assert_array_equal(ds.to_arrays()[0], table.X)
    # Without it, the one column "a;b;label" is all there is.
    with pytest.raises(DataError, match="target column 'label' not found"):
        read_data(path, target="label")


@pytest.mark.parametrize(
    ("delimiter", "fmt", "message"),
    [
        (";;", None, "one character"),
        ('"', None, "one character"),
        (";", "parquet", "a delimiter is for CSV files, not parquet"),
    ],
)
def test_bad_delimiters_are_refused(tmp_path, frame, delimiter, fmt, message):
    path = _write_text(tmp_path / "d.csv", _csv_text(frame, ","))
    if fmt == "parquet":
        path = tmp_path / "d.parquet"
        pq.write_table(pa.table(frame), path)
    with pytest.raises(DataError, match=message):
        read_data(path, target="label", delimiter=delimiter)


def test_weight_column_cannot_be_a_feature(tmp_path, frame):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table(frame), path)
    message = "column 'w' is both the weight and a feature"
    with pytest.raises(DataError, match=message):
        read_data(path, target="label", features="a,w", weight_column="w")
    with pytest.raises(DataError, match=message):
        Dataset.from_parquet(path, target="label", features="a,w", weight="w")


def test_data_errors_are_input_errors():
    assert issubclass(DataError, InputError)
    assert issubclass(DataError, ValueError)
