"""The command line in bounded memory and in pipes (issue 13, items 1 and 2).

Streamed and whole reads give the same models, predictions and metrics; a
failure mid-stream leaves the old output; ``-`` is standard input and output,
and stdout holds nothing but data. The readers and writers under the CLI
(standard input, ``.npy`` by row ranges, size estimates, batch writers) are
tested here too.
"""

from __future__ import annotations

import gzip
import io as std_io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpulogreg
from gpulogreg import _cli_stream
from gpulogreg._cli_stream import MetricsAccumulator, parse_size, stream_chunk_rows
from gpulogreg.cli import evaluate_predictions, main
from gpulogreg.io import (
    DataError,
    PredictionWriter,
    estimate_size,
    iter_batches,
    open_predictions,
    read_data,
)
from gpulogreg.persistence import load_with_metadata
from tests._helpers import make_classification

pa = pytest.importorskip("pyarrow")
pcsv = pytest.importorskip("pyarrow.csv")
pq = pytest.importorskip("pyarrow.parquet")

FEATURES = ["f0", "f1", "f2", "f3", "f4"]
#: Rows of the generated problem: three chunks of the smallest budget-sized chunk (1,024 rows).
N_ROWS = 3000
#: The streamed fit's coefficients against the in-memory fit's (Newton, tol 1e-10).
RTOL = 1e-10


def _run(capsys, args: list[object]) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def problem() -> dict[str, np.ndarray]:
    X, y = make_classification(N_ROWS, len(FEATURES), seed=5)
    return {
        "X": X,
        "y": np.where(y == 1, "yes", "no"),
        "id": np.array([f"r{i:05d}" for i in range(N_ROWS)]),
    }


def _columns(problem: dict[str, np.ndarray]) -> dict[str, object]:
    return {
        "row": problem["id"],
        **{name: problem["X"][:, j] for j, name in enumerate(FEATURES)},
        "label": problem["y"],
    }


def _write(path: Path, columns: dict[str, object]) -> Path:
    table = pa.table(columns)
    if path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=700)
    return path


def _read_output(path: Path):  # type: ignore[no-untyped-def]
    if path.suffix == ".parquet":
        return pq.read_table(path)
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return pa.Table.from_pylist(rows)
    return pcsv.read_csv(
        path, parse_options=pcsv.ParseOptions(delimiter="\t" if path.suffix == ".tsv" else ",")
    )


def _params(model) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.concatenate([model.coef_.ravel(), model.intercept_.ravel()])


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------- the budget
@pytest.mark.parametrize(
    ("text", "size"),
    [("500M", 500 * 2**20), ("2G", 2 * 2**30), ("1.5GiB", 3 * 2**29), ("64kb", 65536),
     ("800000", 800000), (" 3 T ", 3 * 2**40)],
)  # fmt: skip
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "2X", "-1G", "0", "0.0001k", "1e9"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_default_budget_is_half_the_available_memory(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_cli_stream, "available_memory", lambda: 8 * 2**30)
    assert _cli_stream.default_budget() == 4 * 2**30
    monkeypatch.setattr(_cli_stream, "available_memory", lambda: None)
    assert _cli_stream.default_budget() == _cli_stream.FALLBACK_BUDGET


def test_available_memory_on_this_machine() -> None:
    available = _cli_stream.available_memory()
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo")
    assert available is not None
    assert available > 0


@pytest.mark.parametrize(
    ("limit", "usage", "headroom"),
    [("max", "100", None), (str(2**63 - 4096), "100", None), ("1000", "300", 700), ("5", "9", 0)],
)
def test_cgroup_headroom(tmp_path, limit: str, usage: str, headroom: int | None) -> None:  # type: ignore[no-untyped-def]
    group = tmp_path / "job"
    group.mkdir()
    (group / "memory.max").write_text(limit + "\n")
    (group / "memory.current").write_text(usage + "\n")
    files = (str(tmp_path), "memory.max", "memory.current")
    assert _cli_stream._headroom(files, "/job") == headroom
    # Inside a container the cgroup's path is not under the mount: its root is the group.
    assert _cli_stream._headroom((str(group), "memory.max", "memory.current"), "/elsewhere") == (
        headroom
    )


def test_stream_chunk_rows_follow_the_budget() -> None:
    assert stream_chunk_rows(50, 4, 2**40) == _cli_stream.STREAM_CHUNK_BYTES // 200
    assert stream_chunk_rows(50, 4, 100 * 2**20) == 10 * 2**20 // 200
    assert stream_chunk_rows(50, 8, 1000) == _cli_stream.MIN_CHUNK_ROWS


# --------------------------------------------------------------------------- readers
def test_estimate_size_from_metadata(tmp_path, problem) -> None:  # type: ignore[no-untyped-def]
    columns = _columns(problem)
    f32 = {k: (v.astype(np.float32) if k in FEATURES else v) for k, v in columns.items()}
    parquet = _write(tmp_path / "d.parquet", f32)
    estimate = estimate_size(parquet, exclude=["label", "row"])
    assert estimate is not None
    assert (estimate.rows, estimate.features, estimate.itemsize, estimate.exact) == (
        N_ROWS, 5, 4, True
    )  # fmt: skip
    assert estimate_size(parquet, features="f0,f1").features == 2  # type: ignore[union-attr]
    # A CSV file larger than its sample: rows from the bytes per line of its first MiB.
    rng = np.random.default_rng(0)
    big = {f"c{j}": rng.normal(size=40_000) for j in range(4)}
    csv_path = _write(tmp_path / "big.csv", big)
    assert os.path.getsize(csv_path) > 2**20
    estimate = estimate_size(csv_path)
    assert estimate is not None
    assert not estimate.exact
    assert abs(estimate.rows - 40_000) < 0.05 * 40_000
    assert (estimate.features, estimate.itemsize) == (4, 8)
    gz = tmp_path / "big.csv.gz"
    gz.write_bytes(gzip.compress(csv_path.read_bytes()))
    estimate = estimate_size(gz)
    assert estimate is not None
    assert abs(estimate.rows - 40_000) < 0.05 * 40_000
    small = _write(tmp_path / "small.csv", columns)
    assert estimate_size(small, exclude=["label", "row"]) == type(estimate)(N_ROWS, 5, 8, True)
    np.save(tmp_path / "X.npy", problem["X"].astype(np.float32))
    estimate = estimate_size(tmp_path / "X.npy", exclude=["-1"])
    assert estimate == type(estimate)(N_ROWS, 4, 4, True)
    (tmp_path / "d.svm").write_text("1 1:0.5\n")
    assert estimate_size(tmp_path / "d.svm") is None
    assert estimate_size("-") is None


def _stdin(monkeypatch, data: bytes) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "stdin", std_io.TextIOWrapper(std_io.BytesIO(data)))


def test_stdin_reads_as_the_file(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Over a MiB, so that the schema comes from the first block and the rest follows.
    rng = np.random.default_rng(1)
    columns = {
        "a": rng.normal(size=60_000),
        "b": rng.integers(0, 9, 60_000),
        "y": rng.integers(0, 2, 60_000),
    }
    path = _write(tmp_path / "d.csv", columns)
    assert os.path.getsize(path) > 2**20
    whole = read_data(path, target="y")
    _stdin(monkeypatch, path.read_bytes())
    piped = read_data("-", target="y")
    np.testing.assert_array_equal(piped.X, whole.X)
    np.testing.assert_array_equal(piped.y, whole.y)
    with pytest.raises(DataError, match="standard input was read already"):
        read_data("-", target="y")
    _stdin(monkeypatch, path.read_bytes())
    chunks = list(iter_batches("-", target="y", chunk_rows=7000))
    assert [c.n_rows for c in chunks] == [7000] * 8 + [4000]
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), whole.X)


def test_stdin_errors_name_the_column(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _stdin(monkeypatch, b"a,y\n1,0\nx,1\n")
    with pytest.raises(DataError, match="-: column 'a' is not numeric"):
        read_data("-", target="y")
    _stdin(monkeypatch, b"1 1:0.5\n0 2:1.5\n")
    table = read_data("-", format="svmlight")
    np.testing.assert_array_equal(table.X.toarray(), [[0.5, 0.0], [0.0, 1.5]])
    with pytest.raises(DataError, match="parquet data cannot be read from standard input"):
        read_data("-", format="parquet")


def test_npy_batches_are_row_ranges_of_the_file(tmp_path, problem) -> None:  # type: ignore[no-untyped-def]
    data = np.column_stack([problem["X"], (problem["y"] == "yes").astype(float)])
    np.save(tmp_path / "d.npy", data)
    whole = read_data(tmp_path / "d.npy", target="-1", features=[3, 1])
    chunks = list(iter_batches(tmp_path / "d.npy", target="-1", features=[3, 1], chunk_rows=700))
    assert [c.n_rows for c in chunks] == [700] * 4 + [200]
    assert all(not isinstance(c.X, np.memmap) and c.X.base is None for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), whole.X)
    np.testing.assert_array_equal(np.concatenate([c.y for c in chunks]), whole.y)
    data[2345, 2] = np.nan
    np.save(tmp_path / "d.npy", data)
    with pytest.raises(DataError, match="contains nan at row 2345"):
        list(iter_batches(tmp_path / "d.npy", target="-1", chunk_rows=700))


# --------------------------------------------------------------------------- writers
@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_writer_in_batches_equals_one_write(tmp_path, ext: str) -> None:  # type: ignore[no-untyped-def]
    columns = {
        "id": np.array([f"x{i}" for i in range(10)]),
        "prediction": np.arange(10) % 3,
        "proba_1": np.linspace(0, 1, 10) / 3,
    }
    whole, parts = tmp_path / f"whole{ext}", tmp_path / f"parts{ext}"
    with open_predictions(whole) as writer:
        writer.write(columns)
    with open_predictions(parts) as writer:
        for start, stop in ((0, 3), (3, 7), (7, 10)):
            writer.write({k: v[start:stop] for k, v in columns.items()})
    assert writer.rows == 10
    assert _read_output(parts).equals(_read_output(whole))
    table = _read_output(parts)
    assert table.column_names == ["id", "prediction", "proba_1"]
    np.testing.assert_array_equal(table.column("proba_1").to_numpy(), columns["proba_1"])


def test_json_lines_are_one_object_per_row() -> None:
    handle = std_io.BytesIO()
    writer = PredictionWriter(handle, "jsonl")
    writer.write({"id": np.array(["a", 'b"']), "prediction": np.array([True, False])})
    assert handle.getvalue().decode().splitlines() == [
        '{"id": "a", "prediction": true}',
        '{"id": "b\\"", "prediction": false}',
    ]


# --------------------------------------------------------------------------- fit
@pytest.fixture(params=[".csv", ".parquet", ".npy"])
def train_file(request, tmp_path, problem) -> Path:  # type: ignore[no-untyped-def]
    if request.param == ".npy":
        np.save(tmp_path / "X.npy", problem["X"])
        np.save(tmp_path / "y.npy", problem["y"])
        return tmp_path / "X.npy"
    return _write(tmp_path / f"train{request.param}", _columns(problem))


def _fit_args(train_file: Path, model: Path) -> list[object]:
    target = train_file.with_name("y.npy") if train_file.suffix == ".npy" else "label"
    args: list[object] = ["fit", train_file, "--target", target, "--model", model]
    if train_file.suffix != ".npy":
        args += ["--id", "row"]
    return [*args, "--solver", "newton", "--tol", "1e-10", "--json"]


@pytest.mark.parametrize("streaming", [["--chunk-rows", "450"], ["--memory-budget", "4K"]])
def test_streamed_fit_equals_the_in_memory_fit(capsys, tmp_path, train_file, streaming) -> None:  # type: ignore[no-untyped-def]
    code, out, err = _run(capsys, _fit_args(train_file, tmp_path / "whole.glr"))
    assert code == 0, err
    whole = json.loads(out)
    assert whole["streamed"] is False
    assert err == ""
    code, out, err = _run(capsys, [*_fit_args(train_file, tmp_path / "streamed.glr"), *streaming])
    assert code == 0, err
    streamed = json.loads(out)
    assert streamed["streamed"] is True
    assert streamed["chunk_rows"] == (450 if streaming[0] == "--chunk-rows" else 1024)
    assert streamed["backend"].startswith("chunked(")
    if streaming[0] == "--memory-budget":  # the budget decided: say so, unless --quiet
        assert "streaming in chunks of 1,024 rows" in err
        assert "over the memory budget" in err
        argv = [*_fit_args(train_file, tmp_path / "quiet.glr"), *streaming, "--quiet"]
        assert _run(capsys, argv)[2] == ""
    else:
        assert err == ""
    for key in ("rows", "features", "dtype", "classes", "solver", "iterations", "converged"):
        assert streamed[key] == whole[key], key
    a, meta_a = load_with_metadata(tmp_path / "whole.glr")
    b, meta_b = load_with_metadata(tmp_path / "streamed.glr")
    assert _rel(_params(b), _params(a)) < RTOL
    assert meta_b["extra"] == meta_a["extra"]
    names = FEATURES if train_file.suffix != ".npy" else [f"x{j}" for j in range(5)]
    assert meta_b["extra"]["features"] == names
    assert meta_b["extra"]["trained_rows"] == N_ROWS
    np.testing.assert_array_equal(b.classes_, a.classes_)
    assert not hasattr(b, "feature_names_in_")
    assert not hasattr(a, "feature_names_in_")


def test_streamed_fit_takes_the_features_by_name(capsys, tmp_path, problem) -> None:  # type: ignore[no-untyped-def]
    data = _write(tmp_path / "train.csv", _columns(problem))
    args = ["fit", data, "--target", "label", "--features", "f3,f1", "--solver", "newton"]
    for name, extra in (("whole", []), ("streamed", ["--chunk-rows", "1000"])):
        code, _, err = _run(capsys, [*args, "--tol", "1e-10", "--model", tmp_path / name, *extra])
        assert code == 0, err
    a, meta_a = load_with_metadata(tmp_path / "whole")
    b, meta_b = load_with_metadata(tmp_path / "streamed")
    assert meta_b["extra"]["features"] == meta_a["extra"]["features"] == ["f3", "f1"]
    assert _rel(_params(b), _params(a)) < RTOL


def test_streamed_fit_summary_equals_the_in_memory_table(capsys, tmp_path, problem) -> None:  # type: ignore[no-untyped-def]
    data = _write(tmp_path / "train.parquet", _columns(problem))
    args = ["fit", data, "--target", "label", "--id", "row", "--penalty", "none", "--summary"]
    tables = []
    for extra in ([], ["--chunk-rows", "800"]):
        code, out, err = _run(capsys, [*args, "--model", tmp_path / "m.glr", "--json", *extra])
        assert code == 0, err
        tables.append(json.loads(out)["coefficients"])
    whole, streamed = tables
    assert [r["parameter"] for r in streamed] == ["intercept", *FEATURES]
    for name in ("coef", "std_err", "p_value"):
        np.testing.assert_allclose(
            [r[name] for r in streamed], [r[name] for r in whole], rtol=1e-6, atol=1e-12
        )


def test_dense_npz_cannot_stream_and_says_so(capsys, tmp_path, problem) -> None:  # type: ignore[no-untyped-def]
    y = (problem["y"] == "yes").astype(int)
    np.savez(tmp_path / "d.npz", X=problem["X"], y=y)
    code, out, err = _run(
        capsys,
        ["fit", tmp_path / "d.npz", "--model", tmp_path / "m.glr", "--chunk-rows", "100", "--json"],
    )
    assert code == 0, err
    assert "warning: npz files cannot be streamed: reading" in err
    assert json.loads(out)["streamed"] is False
    code, out, err = _run(
        capsys, ["fit", tmp_path / "d.npz", "--model", tmp_path / "m.glr", "--memory-budget", "1K"]
    )
    assert code == 0, err
    assert "more than the memory budget of 1.0 KiB" in err


def test_model_to_stdout_is_refused(capsys, tmp_path, problem) -> None:  # type: ignore[no-untyped-def]
    data = _write(tmp_path / "train.csv", _columns(problem))
    code, out, err = _run(capsys, ["fit", data, "--target", "label", "--model", "-"])
    assert code == 2
    assert "--model: '-' (standard output) is not accepted here" in err
    assert out == ""


# --------------------------------------------------------------------------- predict / evaluate
@pytest.fixture(scope="module")
def fitted(tmp_path_factory, problem) -> tuple[Path, Path, Path]:  # type: ignore[no-untyped-def]
    directory = tmp_path_factory.mktemp("fitted")
    csv_path = _write(directory / "data.csv", _columns(problem))
    parquet_path = _write(directory / "data.parquet", _columns(problem))
    model = directory / "model.glr"
    assert (
        main(["fit", str(parquet_path), "--target", "label", "--id", "row", "--model", str(model)])
        == 0
    )
    return csv_path, parquet_path, model


@pytest.mark.parametrize("source", ["csv", "parquet"])
@pytest.mark.parametrize("ext", [".csv", ".parquet", ".jsonl"])
def test_streamed_predictions_equal_the_models(
    capsys, tmp_path, problem, fitted, source, ext
) -> None:  # type: ignore[no-untyped-def]
    csv_path, parquet_path, model_path = fitted
    data = csv_path if source == "csv" else parquet_path
    out_path = tmp_path / f"pred{ext}"
    code, out, err = _run(
        capsys,
        ["predict", "--model", model_path, data, "--output", out_path, "--proba", "--id", "row",
         "--chunk-rows", "700", "--json"],
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["rows"] == N_ROWS
    table = _read_output(out_path)
    assert table.column_names == ["row", "prediction", "proba_no", "proba_yes"]
    model = gpulogreg.load(model_path)
    assert table.column("row").to_pylist() == problem["id"].tolist()
    np.testing.assert_array_equal(
        table.column("prediction").to_numpy(zero_copy_only=False), model.predict(problem["X"])
    )
    proba = np.column_stack([table.column(c).to_numpy() for c in ("proba_no", "proba_yes")])
    np.testing.assert_allclose(proba, model.predict_proba(problem["X"]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".jsonl"])
def test_failure_mid_stream_keeps_the_old_output(capsys, tmp_path, problem, fitted, ext) -> None:  # type: ignore[no-untyped-def]
    _, _, model = fitted
    columns = _columns(problem)
    f2 = problem["X"][:, 2].copy()
    f2[-1] = np.nan  # in the last chunk: the first chunks were scored and written
    bad = _write(tmp_path / "bad.parquet", {**columns, "f2": f2})
    output = tmp_path / f"pred{ext}"
    output.write_bytes(b"old\n")
    code, _, err = _run(
        capsys, ["predict", "--model", model, bad, "--output", output, "--chunk-rows", "500"]
    )
    assert code == 2
    assert f"column 'f2' contains nan at row {N_ROWS - 1}" in err
    assert output.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", f"pred{ext}"]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_streamed_evaluate_equals_the_whole_arrays(capsys, tmp_path, n_classes: int) -> None:  # type: ignore[no-untyped-def]
    X, y = make_classification(2000, 4, seed=3, n_classes=n_classes)
    data = _write(tmp_path / "d.parquet", {**{f"f{j}": X[:, j] for j in range(4)}, "label": y})
    model_path = tmp_path / "m.glr"
    assert _run(capsys, ["fit", data, "--target", "label", "--model", model_path])[0] == 0
    code, out, err = _run(
        capsys, ["evaluate", "--model", model_path, data, "--chunk-rows", "300", "--json"]
    )
    assert code == 0, err
    streamed = json.loads(out)
    model = gpulogreg.load(model_path)
    whole = evaluate_predictions(y, model.predict_proba(X), model.classes_, model.predict(X))
    assert streamed["rows"] == whole["rows"] == 2000
    assert streamed["confusion"] == whole["confusion"]
    for key in ("log_loss", "accuracy", "roc_auc"):
        assert streamed[key] == pytest.approx(whole[key], rel=1e-12), key


def test_evaluate_plot_counts_every_chunk(capsys, monkeypatch, tmp_path, fitted) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    import gpulogreg.cli

    _, parquet_path, model = fitted
    drawn = []
    monkeypatch.setattr(gpulogreg.cli, "_save_evaluation_plot", lambda a, c: drawn.append(c))
    for extra in ([], ["--chunk-rows", "700"]):
        argv = ["evaluate", "--model", model, parquet_path, "--plot", tmp_path / "c.png"]
        code, _, err = _run(capsys, [*argv, *extra])
        assert code == 0, err
    whole, streamed = drawn
    assert whole.roc_counts.sum() == N_ROWS
    np.testing.assert_array_equal(streamed.roc_counts, whole.roc_counts)
    np.testing.assert_array_equal(streamed.calibration_rows, whole.calibration_rows)


def test_metrics_add_up_chunk_by_chunk() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 500)
    proba = rng.dirichlet(np.ones(3), 500)
    predicted = proba.argmax(axis=1)
    whole = evaluate_predictions(y, proba, np.arange(3), predicted)
    metrics = MetricsAccumulator(np.arange(3))
    for start in range(0, 500, 123):
        stop = start + 123
        metrics.add(y[start:stop], proba[start:stop], predicted[start:stop])
    result = metrics.result()
    assert result["confusion"] == whole["confusion"]
    for key in ("rows", "log_loss", "accuracy", "roc_auc"):
        assert result[key] == pytest.approx(whole[key], rel=1e-13), key
    with pytest.raises(DataError, match="no rows"):
        MetricsAccumulator([0, 1]).result()


# --------------------------------------------------------------------------- pipes
def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "gpulogreg.cli", *map(str, args)]


def test_predict_from_stdin_to_stdout_holds_only_data(tmp_path, problem, fitted) -> None:  # type: ignore[no-untyped-def]
    csv_path, _, model = fitted
    argv = _cli(
        "predict",
        "--model",
        model,
        "-",
        "--output",
        "-",
        "--id",
        "row",
        "--proba",
        "--json",
        "--chunk-rows",
        "1000",
    )
    with open(csv_path, "rb") as stdin:
        proc = subprocess.run(argv, stdin=stdin, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(csv_path, "rb") as stdin:
        quiet = subprocess.run(
            [a for a in argv if a != "--json"] + ["--quiet"], stdin=stdin, capture_output=True
        )
    assert quiet.stderr == b""
    assert quiet.stdout == proc.stdout
    table = pcsv.read_csv(pa.BufferReader(proc.stdout))
    assert table.num_rows == N_ROWS
    assert table.column_names == ["row", "prediction", "proba_no", "proba_yes"]
    expected = gpulogreg.load(model).predict_proba(problem["X"])
    np.testing.assert_allclose(table.column("proba_yes").to_numpy(), expected[:, 1], rtol=1e-12)
    summary = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    assert summary["rows"] == N_ROWS
    assert summary["output"] == "-"
    # JSON lines, and Parquet, to stdout.
    for fmt in ("jsonl", "parquet"):
        with open(csv_path, "rb") as stdin:
            proc = subprocess.run(
                [*argv, "--output-format", fmt], stdin=stdin, capture_output=True, timeout=300
            )
        assert proc.returncode == 0, proc.stderr
        if fmt == "jsonl":
            rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
        else:
            rows = pq.read_table(pa.BufferReader(proc.stdout)).to_pylist()
        assert len(rows) == N_ROWS
        assert list(rows[0]) == ["row", "prediction", "proba_no", "proba_yes"]
        assert rows[-1]["row"] == problem["id"][-1]


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path, fitted) -> None:  # type: ignore[no-untyped-def]
    csv_path, _, model = fitted
    big = tmp_path / "big.csv"  # scores far more than a pipe buffers (64 KiB)
    text = csv_path.read_text()
    header, body = text.split("\n", 1)
    big.write_text(header + "\n" + body * 20)
    command = " ".join(
        _cli("predict", "--model", model, "-", "--output", "-", "--proba", "--chunk-rows", "2000")
    )
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; cat {big} | {command} | head -n 3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout.splitlines()[0] == '"prediction","proba_no","proba_yes"'
    assert len(proc.stdout.splitlines()) == 3
    assert "Traceback" not in proc.stderr
    assert proc.stderr == ""


def test_fit_and_evaluate_read_stdin(capsys, monkeypatch, tmp_path, fitted) -> None:  # type: ignore[no-untyped-def]
    csv_path, _, _ = fitted
    args = ["--target", "label", "--id", "row", "--solver", "newton", "--tol", "1e-10"]
    assert _run(capsys, ["fit", csv_path, *args, "--model", tmp_path / "file.glr"])[0] == 0
    _stdin(monkeypatch, csv_path.read_bytes())
    code, _, err = _run(capsys, ["fit", "-", *args, "--model", tmp_path / "pipe.glr"])
    assert code == 0, err
    a, b = gpulogreg.load(tmp_path / "file.glr"), gpulogreg.load(tmp_path / "pipe.glr")
    np.testing.assert_array_equal(_params(a), _params(b))
    code, from_file, err = _run(
        capsys, ["evaluate", "--model", tmp_path / "file.glr", csv_path, "--json"]
    )
    assert code == 0, err
    _stdin(monkeypatch, csv_path.read_bytes())
    code, from_pipe, err = _run(
        capsys, ["evaluate", "--model", tmp_path / "file.glr", "-", "--json"]
    )
    assert code == 0, err
    assert {**json.loads(from_pipe), "data": None} == {**json.loads(from_file), "data": None}


# --------------------------------------------------------------- weights, datasets, delimiters
def test_streamed_fit_of_a_weighted_parquet_dataset(capsys, tmp_path, problem) -> None:  # type: ignore[no-untyped-def]
    columns = _columns(problem)
    columns["w"] = np.random.default_rng(4).uniform(0.5, 2.0, N_ROWS)
    folder = tmp_path / "dataset"
    folder.mkdir()
    for part, start in enumerate(range(0, N_ROWS, 1000)):
        rows = {k: np.asarray(v)[start : start + 1000] for k, v in columns.items()}
        pq.write_table(pa.table(rows), folder / f"part-{part}.parquet")
    estimate = estimate_size(folder, exclude=["label", "row", "w"])
    assert estimate is not None
    assert (estimate.rows, estimate.features, estimate.exact) == (N_ROWS, 5, True)
    args = ["fit", folder, "--target", "label", "--id", "row", "--weight", "w"]
    args += ["--solver", "newton", "--tol", "1e-10", "--penalty", "none", "--summary", "--json"]
    tables = []
    for name, extra in (("whole", []), ("streamed", ["--chunk-rows", "700"])):
        code, out, err = _run(capsys, [*args, "--model", tmp_path / name, *extra])
        assert code == 0, err
        tables.append(json.loads(out)["coefficients"])
    a, meta_a = load_with_metadata(tmp_path / "whole")
    b, meta_b = load_with_metadata(tmp_path / "streamed")
    assert _rel(_params(b), _params(a)) < RTOL
    assert meta_b["extra"] == meta_a["extra"]
    assert meta_b["extra"]["weight"] == "w"
    reference = gpulogreg.LogisticRegression(C=np.inf, solver="newton", tol=1e-10)
    reference.fit(problem["X"], problem["y"], sample_weight=columns["w"])
    assert _rel(_params(b), _params(reference)) < 1e-8
    # The coefficient table is the weighted fit's, streamed or not.
    expected = reference.inference(problem["X"], problem["y"], sample_weight=columns["w"])
    for table in tables:
        np.testing.assert_allclose([r["std_err"] for r in table], expected.bse, rtol=1e-6)


def test_streamed_weighted_evaluate_equals_the_whole_arrays(
    capsys, tmp_path, problem, fitted
) -> None:  # type: ignore[no-untyped-def]
    _, _, model_path = fitted
    weights = np.random.default_rng(6).uniform(0.0, 3.0, N_ROWS)
    data = _write(tmp_path / "weighted.parquet", {**_columns(problem), "w": weights})
    argv = [
        "evaluate",
        "--model",
        model_path,
        data,
        "--weight",
        "w",
        "--json",
        "--chunk-rows",
        "450",
    ]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    streamed = json.loads(out)
    model = gpulogreg.load(model_path)
    X = problem["X"]
    whole = evaluate_predictions(
        problem["y"], model.predict_proba(X), model.classes_, model.predict(X), weights
    )
    assert streamed["weight_sum"] == pytest.approx(whole["weight_sum"], rel=1e-12)
    for key in ("log_loss", "accuracy", "roc_auc"):
        assert streamed[key] == pytest.approx(whole[key], rel=1e-12), key
    np.testing.assert_allclose(streamed["confusion"]["matrix"], whole["confusion"]["matrix"])


def test_weighted_roc_auc_is_scikit_learns() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(8)
    score = np.round(rng.random(3000), 2)  # many ties
    positive = rng.random(3000) < score
    weight = rng.uniform(0, 2, 3000)
    expected = sklearn_metrics.roc_auc_score(positive, score, sample_weight=weight)
    assert _cli_stream._roc_auc(positive, score, weight) == pytest.approx(expected, rel=1e-12)
    assert _cli_stream._roc_auc(positive, score) == pytest.approx(
        sklearn_metrics.roc_auc_score(positive, score), rel=1e-12
    )


def test_predict_reads_stdin_with_a_delimiter(
    capsys, monkeypatch, tmp_path, problem, fitted
) -> None:  # type: ignore[no-untyped-def]
    _, parquet_path, model_path = fitted
    table = pa.table(_columns(problem))
    sink = pa.BufferOutputStream()
    pcsv.write_csv(table, sink, write_options=pcsv.WriteOptions(delimiter=";"))
    _stdin(monkeypatch, sink.getvalue().to_pybytes())
    out_path = tmp_path / "p.csv"
    argv = ["predict", "--model", model_path, "-", "--delimiter", ";", "--output", out_path]
    code, _, err = _run(capsys, [*argv, "--chunk-rows", "1000"])
    assert code == 0, err
    code, _, err = _run(
        capsys, ["predict", "--model", model_path, parquet_path, "--output", tmp_path / "q.csv"]
    )
    assert code == 0, err
    assert _read_output(out_path).equals(_read_output(tmp_path / "q.csv"))
