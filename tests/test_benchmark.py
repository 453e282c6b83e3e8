"""The benchmark harness at a tiny size: records, table, JSON lines and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpulogreg.benchmark import BenchConfig, format_table, make_problem, run
from gpulogreg.cli import main


@pytest.mark.parametrize("conditioning", ["well", "ill"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_make_problem(conditioning, dtype):
    X, y = make_problem(1000, 8, dtype=dtype, conditioning=conditioning, seed=3)
    assert X.shape == (1000, 8)
    assert X.dtype == np.dtype(dtype)
    assert X.flags.c_contiguous
    assert set(np.unique(y)) == {0, 1}
    std = X.std(axis=0)
    if conditioning == "ill":
        assert std.max() / std.min() > 100  # scales from 0.03 to 30
    else:
        np.testing.assert_allclose(std, 1.0, rtol=0.15)
    X2, y2 = make_problem(1000, 8, dtype=dtype, conditioning=conditioning, seed=3)
    np.testing.assert_array_equal(X, X2)  # reproducible
    np.testing.assert_array_equal(y, y2)


def test_make_problem_depends_on_the_seed_only(monkeypatch):
    """Blocks on several threads, each from its own stream: the thread count changes nothing."""
    from gpulogreg import benchmark

    monkeypatch.setattr(benchmark, "_GENERATE_BLOCK_ROWS", 1000)
    rows = 5 * 1000 + 333  # a short last block, with an odd number of values
    X, y = make_problem(rows, 7, conditioning="ill", seed=4)
    monkeypatch.setattr(benchmark, "_usable_cpus", lambda: 1)
    X1, y1 = make_problem(rows, 7, conditioning="ill", seed=4)
    np.testing.assert_array_equal(X, X1)
    np.testing.assert_array_equal(y, y1)
    X2, _ = make_problem(rows, 7, conditioning="ill", seed=5)
    assert not np.array_equal(X, X2)


def test_generated_features_are_standard_normal():
    X, y = make_problem(200_000, 5, seed=1)
    values = X.ravel().astype(np.float64)
    assert abs(values.mean()) < 0.005
    assert abs(values.std() - 1.0) < 0.005
    # Tail frequencies of N(0, 1): P(|z| > 1) = 0.3173, P(|z| > 3) = 0.0027.
    assert np.mean(np.abs(values) > 1.0) == pytest.approx(0.3173, abs=0.002)
    assert np.mean(np.abs(values) > 3.0) == pytest.approx(0.0027, abs=0.0002)
    # Independent columns, and labels from the logistic model (about 55% ones).
    corr = np.corrcoef(X, rowvar=False)
    assert np.abs(corr - np.eye(5)).max() < 0.01
    assert 0.5 < y.mean() < 0.65


def test_multiclass_problems_draw_softmax_labels_and_run():
    X, y = make_problem(20_000, 6, n_classes=4, seed=2)
    assert set(np.unique(y)) == {0, 1, 2, 3}
    # Softmax labels: a multinomial fit predicts them far better than chance
    # (1/4), and the classes are all well represented.
    from gpulogreg import LogisticRegression

    assert LogisticRegression().fit(X, y).score(X, y) > 0.5
    counts = np.bincount(y) / len(y)
    assert counts.min() > 0.08
    cfg = BenchConfig(
        rows=3000, cols=5, repeat=2, conditioning=("well",), solvers=("lbfgs",), classes=3
    )
    result = run(cfg)
    assert result.of_kind("config")[0]["classes"] == 3
    (fit,) = [r for r in result.of_kind("fit") if r["backend"] == "numba"]
    assert fit["gap"] <= 1e-8  # the multinomial reference, evaluated in its own layout
    assert "3 classes (multinomial)" in format_table(result)
    X2, y2 = make_problem(20_000, 6, n_classes=4, seed=2)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


def test_make_problem_rejects_bad_arguments():
    with pytest.raises(ValueError, match="conditioning"):
        make_problem(10, 2, conditioning="medium")
    with pytest.raises(ValueError, match="dtype"):
        make_problem(10, 2, dtype="int8")
    with pytest.raises(ValueError, match="n_classes"):
        make_problem(10, 2, n_classes=1)
    with pytest.raises(ValueError, match="--classes takes the dense problems"):
        run(BenchConfig(rows=100, cols=3, sparse="ctr", classes=3))


def test_run_tiny():
    cfg = BenchConfig(rows=600, cols=5, repeat=2, conditioning=("well",), sklearn=False)
    result = run(cfg)
    kinds = {r["kind"] for r in result.records}
    assert {"config", "read_floor", "loss_grad", "reference", "fit"} <= kinds
    lg = {r["backend"]: r for r in result.of_kind("loss_grad")}
    assert "numpy" in lg
    assert lg["numpy"]["speedup_vs_numpy"] == 1.0
    assert all(r["seconds"] > 0 and r["gb_per_s"] > 0 for r in lg.values())
    fits = result.of_kind("fit")
    assert {r["solver"] for r in fits} == {"newton", "lbfgs", "gd"}
    for r in fits:
        assert r["peak_rss_mb"] > 0
        if r["solver"] == "newton":
            assert r["gap"] <= 1e-8
            assert 0 < r["time_to_optimum"] <= r["seconds"] + 1e-9
    table = format_table(result)
    assert "loss and gradient" in table
    assert "time to the optimum" in table


def test_cli_bench_sparse_section(capsys):
    code = main(
        [
            "bench", "--sparse", "ctr", "--rows", "800", "--cols", "5000", "--per-row", "6",
            "--repeat", "1", "--backends", "numpy,sklearn", "--solvers", "newton,lbfgs",
            "-C", "0.1", "--json", "--quiet",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    records = json.loads(out)["records"]
    config = records[0]
    assert config["sparse"] == "ctr"
    assert config["nnz"] == 800 * 6
    floor = next(r for r in records if r["kind"] == "read_floor")
    assert "data, indices" in floor["method"]
    fits = [r for r in records if r["kind"] == "fit"]
    assert {r["solver"] for r in fits if r["backend"] == "sklearn"} == {"lbfgs", "newton-cg"}
    ours = [r for r in fits if r["backend"] == "numpy"]
    assert all(r["gap"] <= 1e-8 for r in ours)


def test_cli_bench_writes_table_json_lines_and_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    jsonl = tmp_path / "bench.jsonl"
    png = tmp_path / "bench.png"
    code = main(
        [
            "bench", "--rows", "500", "--cols", "4", "--repeat", "1", "--conditioning", "well",
            "--solvers", "newton,lbfgs", "--json-out", str(jsonl), "--plot", str(png), "--quiet",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "x floor" in out
    assert "t_opt s" in out
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert records[0]["kind"] == "config"
    assert records[0]["rows"] == 500
    assert any(r["kind"] == "fit" and r["backend"] == "sklearn" for r in records)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bench_rejects_unknown_backend(capsys):
    code = main(["bench", "--rows", "100", "--cols", "2", "--backends", "tpu"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "unknown backend 'tpu'" in err
