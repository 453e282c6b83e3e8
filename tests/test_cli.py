"""End-to-end tests of the ``gpulogreg`` command line on generated CSV and Parquet files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpulogreg
from gpulogreg import LogisticRegression
from gpulogreg.cli import evaluate_predictions, main
from tests._helpers import make_classification

pa = pytest.importorskip("pyarrow")
pcsv = pytest.importorskip("pyarrow.csv")
pq = pytest.importorskip("pyarrow.parquet")

FEATURES = ["f0", "f1", "f2", "f3"]


def _write_table(path: Path, columns: dict[str, object]) -> Path:
    table = pa.table(columns)
    if path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def problem() -> dict[str, np.ndarray]:
    X, y = make_classification(600, len(FEATURES), seed=11)
    return {
        "X": X,
        "y": np.where(y == 1, "churn", "stay"),
        "id": np.array([f"c{i:04d}" for i in range(len(y))]),
    }


def _columns(problem: dict[str, np.ndarray]) -> dict[str, object]:
    X = problem["X"]
    return {
        "customer": problem["id"],
        **{name: X[:, j] for j, name in enumerate(FEATURES)},
        "label": problem["y"],
    }


@pytest.fixture(params=[".csv", ".parquet"])
def data_file(request, tmp_path, problem) -> Path:
    return _write_table(tmp_path / f"data{request.param}", _columns(problem))


def _run(capsys, args: list[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _read_output(path: Path):  # type: ignore[no-untyped-def]
    return pcsv.read_csv(path) if path.suffix == ".csv" else pq.read_table(path)


# --------------------------------------------------------------------------- happy paths
def test_fit_predict_evaluate_match_the_python_api(capsys, tmp_path, data_file, problem):
    model_path = tmp_path / "model.glr"
    code, out, err = _run(
        capsys,
        [
            "fit",
            data_file,
            "--target",
            "label",
            "--id",
            "customer",
            "--C",
            "0.5",
            "--tol",
            "1e-8",
            "--model",
            model_path,
            "--json",
        ],
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows"] == 600
    assert summary["features"] == 4
    assert summary["classes"] == ["churn", "stay"]
    assert summary["converged"] is True

    reference = LogisticRegression(C=0.5, tol=1e-8).fit(problem["X"], problem["y"])
    model = gpulogreg.load(model_path)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, rtol=1e-10, atol=1e-12)

    for ext in (".csv", ".parquet"):
        out_path = tmp_path / f"pred{ext}"
        code, out, err = _run(
            capsys,
            [
                "predict",
                "--model",
                model_path,
                data_file,
                "--output",
                out_path,
                "--proba",
                "--id",
                "customer",
            ],
        )
        assert code == 0, err
        table = _read_output(out_path)
        assert table.column_names == ["customer", "prediction", "proba_churn", "proba_stay"]
        assert table.column("customer").to_pylist() == problem["id"].tolist()
        np.testing.assert_array_equal(
            table.column("prediction").to_numpy(zero_copy_only=False), model.predict(problem["X"])
        )
        proba = model.predict_proba(problem["X"])
        np.testing.assert_array_equal(table.column("proba_churn").to_numpy(), proba[:, 0])
        np.testing.assert_array_equal(table.column("proba_stay").to_numpy(), proba[:, 1])

    code, out, err = _run(
        capsys, ["evaluate", "--model", model_path, data_file, "--target", "label", "--json"]
    )
    assert code == 0, err
    metrics = json.loads(out)
    proba = model.predict_proba(problem["X"])
    assert metrics["rows"] == 600
    y = problem["y"]
    positive = y == "stay"
    p_true = np.where(positive, proba[:, 1], proba[:, 0])
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log(p_true)), rel=1e-12)
    assert metrics["accuracy"] == pytest.approx(np.mean(model.predict(problem["X"]) == y))
    assert metrics["confusion"]["labels"] == ["churn", "stay"]
    assert np.sum(metrics["confusion"]["matrix"]) == 600

    code, out, _ = _run(capsys, ["evaluate", "--model", model_path, data_file, "--target", "label"])
    assert code == 0
    assert "log loss" in out
    assert "ROC AUC" in out


def test_evaluate_agrees_with_scikit_learn_metrics():
    metrics_mod = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    classes = np.array([2, 5, 9])
    y = rng.choice(classes, size=400)
    proba = rng.dirichlet(np.ones(3), size=400)
    proba[:3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # clipping at eps matters
    predicted = classes[proba.argmax(axis=1)]
    ours = evaluate_predictions(y, proba, classes, predicted)
    assert ours["log_loss"] == pytest.approx(metrics_mod.log_loss(y, proba, labels=classes))
    assert ours["accuracy"] == pytest.approx(metrics_mod.accuracy_score(y, predicted))
    assert ours["roc_auc"] == pytest.approx(
        metrics_mod.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)
    )
    np.testing.assert_array_equal(
        ours["confusion"]["matrix"], metrics_mod.confusion_matrix(y, predicted, labels=classes)
    )
    yb = (y == 5).astype(int)
    pb = np.column_stack([1 - proba[:, 1], proba[:, 1]])
    pb[:50, 1] = 0.5  # ties
    pb[:50, 0] = 0.5
    binary = evaluate_predictions(yb, pb, np.array([0, 1]), (pb[:, 1] > 0.5).astype(int))
    assert binary["roc_auc"] == pytest.approx(metrics_mod.roc_auc_score(yb, pb[:, 1]))


def test_fit_npy_and_svmlight(capsys, tmp_path, problem):
    X = problem["X"].astype(np.float32)
    y = (problem["y"] == "churn").astype(np.int64)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    code, out, err = _run(
        capsys,
        [
            "fit",
            tmp_path / "X.npy",
            "--target",
            tmp_path / "y.npy",
            "--model",
            tmp_path / "m.glr",
            "--json",
        ],
    )
    assert code == 0, err
    assert json.loads(out)["dtype"] == "float32"
    code, _, err = _run(
        capsys,
        [
            "predict",
            "--model",
            tmp_path / "m.glr",
            tmp_path / "X.npy",
            "--output",
            tmp_path / "p.parquet",
        ],
    )
    assert code == 0, err
    model = gpulogreg.load(tmp_path / "m.glr")
    predicted = pq.read_table(tmp_path / "p.parquet").column("prediction").to_numpy()
    np.testing.assert_array_equal(predicted, model.predict(X))

    lines = [
        f"{label} " + " ".join(f"{j + 1}:{float(v)!r}" for j, v in enumerate(row) if v != 0)
        for label, row in zip(y, problem["X"], strict=True)
    ]
    (tmp_path / "d.svm").write_text("\n".join(lines) + "\n")
    code, _, err = _run(capsys, ["fit", tmp_path / "d.svm", "--model", tmp_path / "s.glr"])
    assert code == 0, err
    code, out, err = _run(
        capsys, ["evaluate", "--model", tmp_path / "s.glr", tmp_path / "d.svm", "--json"]
    )
    assert code == 0, err
    assert json.loads(out)["rows"] == 600


def test_info_and_demo(capsys):
    code, out, err = _run(capsys, ["info"])
    assert code == 0, err
    assert out.strip()
    code, out, err = _run(capsys, ["info", "--json"])
    assert code == 0
    assert isinstance(json.loads(out), dict)
    code, out, err = _run(
        capsys, ["demo", "--rows", "3000", "--cols", "5", "--test-rows", "1000", "--json"]
    )
    assert code == 0, err
    result = json.loads(out)
    assert 0.0 < result["test"]["log_loss"] < 0.7
    assert 0.5 < result["test"]["accuracy"] <= 1.0
    code, out, err = _run(capsys, ["demo", "--rows", "3000", "--cols", "5", "--test-rows", "0"])
    assert code == 0, err
    assert "log loss" in out
    assert "accuracy" in out
    assert "trained in" in out


def test_help_and_version(capsys):
    code, out, _ = _run(capsys, ["--help"])
    assert code == 0
    for command in ("fit", "predict", "evaluate", "bench", "info", "demo"):
        assert command in out
    code, out, _ = _run(capsys, ["fit", "--help"])
    assert code == 0
    assert "--target" in out
    assert "--batch-size" in out
    code, out, _ = _run(capsys, ["--version"])
    assert code == 0
    assert gpulogreg.__version__ in out


# ----------------------------------------------------------------- the same options everywhere
#: Every subcommand with the arguments it needs to parse.
_SUBCOMMANDS = {
    "fit": ["fit", "d.csv", "--model", "m.glr"],
    "predict": ["predict", "d.csv", "--model", "m.glr", "--output", "p.csv"],
    "evaluate": ["evaluate", "d.csv", "--model", "m.glr"],
    "demo": ["demo"],
    "info": ["info"],
    "bench": ["bench"],
}


@pytest.mark.parametrize("command", list(_SUBCOMMANDS))
def test_every_command_takes_json_quiet_and_no_progress(command):
    from gpulogreg.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(_SUBCOMMANDS[command])
    assert (args.json, args.quiet, args.progress) == (False, False, None)
    args = parser.parse_args([*_SUBCOMMANDS[command], "--json", "--quiet", "--no-progress"])
    assert (args.json, args.quiet, args.progress) == (True, True, False)
    args = parser.parse_args([*_SUBCOMMANDS[command], "-q", "--progress"])
    assert (args.quiet, args.progress) == (True, True)


def test_quiet_commands_write_nothing_on_stderr(capsys, tmp_path, fitted):
    data, model = fitted
    runs = {
        "info": ["info"],
        "demo": ["demo", "--rows", "2000", "--cols", "3", "--test-rows", "100", "--progress"],
        "bench": ["bench", "--rows", "200", "--cols", "2", "--repeat", "1", "--no-fit"],
        # A warning (the iteration cap) is silenced too.
        "fit": ["fit", data, "--target", "label", "--id", "customer", "--model",
                tmp_path / "q.glr", "--solver", "gd", "--max-iter", "1", "--progress"],
        "predict": ["predict", "--model", model, data, "--output", tmp_path / "q.csv"],
        "evaluate": ["evaluate", "--model", model, data, "--target", "label"],
    }  # fmt: skip
    for command, args in runs.items():
        code, out, err = _run(capsys, [*args, "--quiet", "--json"])
        assert code == 0, (command, err)
        assert err == "", command
        assert isinstance(json.loads(out), dict), command
    code, out, _ = _run(capsys, runs["bench"])
    assert "loss and gradient" in out  # without --json: the table
    code, _, err = _run(capsys, [*runs["bench"], "--no-progress"])
    assert err == ""


def test_quiet_keeps_the_error(capsys, tmp_path):
    code, _, err = _run(
        capsys, ["fit", tmp_path / "absent.csv", "--target", "y", "--model", "m.glr", "-q"]
    )
    assert code == 2
    _assert_one_line_error(err)


def test_solver_choices_come_from_the_registry(capsys, tmp_path):
    from gpulogreg.solvers import SOLVERS

    for command in (["fit", tmp_path / "d.csv", "--model", tmp_path / "m.glr"], ["demo"]):
        code, _, err = _run(capsys, [*command, "--solver", "sgd"])
        assert code == 2
        _assert_one_line_error(err)
        assert "argument --solver: invalid choice: 'sgd'" in err
        for name in ("auto", *SOLVERS):
            assert name in err


def test_C_is_an_alias_of_double_dash_C(capsys, tmp_path, fitted):
    data, _ = fitted
    for option in ("-C", "--C"):
        model = tmp_path / f"c{option}.glr"
        args = ["fit", data, "--target", "label", "--id", "customer", "--model", model]
        code, _, err = _run(capsys, [*args, option, "0.25"])
        assert code == 0, err
        assert gpulogreg.load(model).C == 0.25
    from gpulogreg.cli import build_parser

    assert build_parser().parse_args(["demo", "-C", "3"]).C == 3.0
    assert build_parser().parse_args(["bench", "-C", "3"]).C == 3.0


# --------------------------------------------------------------------------- bad input
def _assert_one_line_error(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gpulogreg: error: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_file", "no such file"),
        ("missing_column", "target column 'nope' not found"),
        ("non_numeric", "column 'city' is not numeric"),
        ("nan", "column 'f2'"),
        ("unknown_option", "unrecognized arguments: --frobnicate"),
        ("bad_value", "argument -C/--C"),
        ("one_class", "only 1 class"),
        ("no_target", "--target"),
    ],
)
def test_fit_bad_input(capsys, tmp_path, problem, data_file, case, message):
    columns = _columns(problem)
    args = ["fit", data_file, "--target", "label", "--id", "customer"]
    if case == "missing_file":
        args[1] = tmp_path / f"absent{data_file.suffix}"
    elif case == "missing_column":
        args[3] = "nope"
    elif case == "non_numeric":
        columns["city"] = np.array(["Oslo", "Rome"] * 300)
        _write_table(data_file, columns)
    elif case == "nan":
        f2 = problem["X"][:, 2].copy()
        f2[123] = np.nan
        _write_table(data_file, {**columns, "f2": f2})
    elif case == "unknown_option":
        args.append("--frobnicate")
    elif case == "bad_value":
        args += ["--C", "-1"]
    elif case == "no_target":
        args = ["fit", data_file, "--id", "customer"]
    elif case == "one_class":
        _write_table(data_file, {**columns, "label": np.array(["stay"] * 600)})
    model_path = tmp_path / "model.glr"
    code, _out, err = _run(capsys, [*args, "--model", model_path])
    assert code == 2
    _assert_one_line_error(err)
    assert message in err
    assert not model_path.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


@pytest.fixture
def fitted(capsys, tmp_path, problem) -> tuple[Path, Path]:
    data = _write_table(tmp_path / "train.parquet", _columns(problem))
    model_path = tmp_path / "model.glr"
    code, _, err = _run(
        capsys, ["fit", data, "--target", "label", "--id", "customer", "--model", model_path]
    )
    assert code == 0, err
    return data, model_path


@pytest.mark.parametrize(
    "case", ["missing_file", "missing_column", "non_numeric", "nan", "bad_model", "bad_extension"]
)
def test_predict_bad_input_leaves_no_output(capsys, tmp_path, problem, fitted, case):
    data, model_path = fitted
    columns = _columns(problem)
    bad = tmp_path / "bad.csv"
    output = tmp_path / "pred.csv"
    args = ["predict", "--model", model_path, bad, "--output", output, "--id", "customer"]
    if case == "missing_file":
        pass
    elif case == "missing_column":
        del columns["f1"]
        _write_table(bad, columns)
    elif case == "non_numeric":
        _write_table(bad, {**columns, "f0": np.array(["x"] * 600)})
    elif case == "nan":
        f3 = problem["X"][:, 3].copy()
        f3[-1] = np.nan
        _write_table(bad, {**columns, "f3": f3})
    elif case == "bad_model":
        args[2] = bad
        bad.write_bytes(os.urandom(100))
        args[3] = data
    elif case == "bad_extension":
        args[3] = data
        output = tmp_path / "pred.xlsx"
        args[5] = output
    code, _, err = _run(capsys, args)
    assert code == 2
    _assert_one_line_error(err)
    assert not output.exists()


def test_failed_predict_keeps_the_old_output(capsys, tmp_path, problem, fitted):
    _data, model_path = fitted
    output = tmp_path / "pred.csv"
    output.write_text("old\n")
    code, _, _err = _run(
        capsys, ["predict", "--model", model_path, tmp_path / "absent.csv", "--output", output]
    )
    assert code == 2
    assert output.read_text() == "old\n"


def test_evaluate_unknown_label(capsys, tmp_path, problem, fitted):
    _, model_path = fitted
    columns = _columns(problem)
    labels = problem["y"].copy()
    labels[5] = "maybe"
    data = _write_table(tmp_path / "e.csv", {**columns, "label": labels})
    code, _, err = _run(capsys, ["evaluate", "--model", model_path, data, "--target", "label"])
    assert code == 2
    _assert_one_line_error(err)
    assert "'maybe'" in err


@pytest.mark.parametrize("error", [np.linalg.LinAlgError, ValueError, TypeError])
def test_an_internal_error_exits_1_in_one_line(capsys, monkeypatch, tmp_path, fitted, error):
    """Only errors of the input exit 2: a ValueError from inside a solver is a failure."""
    from gpulogreg.solvers import newton

    def failing_solver(*args, **kwargs):  # type: ignore[no-untyped-def]
        # A fresh instance: a raised one keeps the fit's frames (and objects) alive.
        raise error(f"internal {error.__name__}")

    monkeypatch.setattr(newton, "solve_newton", failing_solver)
    data, _ = fitted
    model = tmp_path / "m.glr"
    args = ["fit", data, "--target", "label", "--id", "customer", "--model", model]
    code, _, err = _run(capsys, [*args, "--solver", "newton"])
    assert code == 1, err
    _assert_one_line_error(err)
    assert f"internal {error.__name__}" in err
    assert not model.exists()


@pytest.mark.parametrize(
    ("penalty", "l1_ratio", "params"),
    [
        (None, None, {}),
        (None, 0.3, {"l1_ratio": 0.3}),
        ("l2", None, {"l1_ratio": 0.0}),
        ("l2", 0.0, {"l1_ratio": 0.0}),
        ("l1", None, {"l1_ratio": 1.0}),
        ("elasticnet", 0.0, {"l1_ratio": 0.0}),
        ("elasticnet", 0.4, {"l1_ratio": 0.4}),
        ("none", None, {"C": math.inf}),
        ("none", 0.0, {"C": math.inf}),
    ],
)
def test_penalty_options_map_to_l1_ratio_and_C(penalty, l1_ratio, params):
    from gpulogreg.cli import _penalty_params

    assert _penalty_params(penalty, l1_ratio) == params


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--penalty", "elasticnet", "--l1-ratio", "2"], "l1_ratio must be in [0, 1]"),
        (["--penalty", "l1", "--solver", "lbfgs"], "supports only 'l2' or None penalties"),
        (["--penalty", "l2", "--l1-ratio", "0.5"], "--penalty l2 takes no --l1-ratio 0.5"),
        (["--penalty", "elasticnet"], "--penalty elasticnet needs --l1-ratio"),
        (["--class-weight", "churn:1,gone:2"], "class_weight names class 'gone'"),
        (["--summary", "--penalty", "l1", "--solver", "gd"], "--summary needs an L2 penalty"),
        (["--solver", "minibatch", "--batch-size", "64", "--class-weight", "churn:x"], "number"),
    ],
)
def test_invalid_estimator_parameters_exit_2(capsys, tmp_path, fitted, options, message):
    data, _ = fitted
    model = tmp_path / "m.glr"
    args = ["fit", data, "--target", "label", "--id", "customer", "--model", model]
    code, _, err = _run(capsys, [*args, *options])
    assert code == 2, err
    _assert_one_line_error(err)
    assert message in err
    assert not model.exists()


def test_input_errors_are_one_family():
    """Every refusal of the input is a gpulogreg.InputError, still a ValueError or TypeError."""
    from gpulogreg._files import ContainerError
    from gpulogreg._model_file import ModelFormatError
    from gpulogreg.checkpoint import CheckpointError
    from gpulogreg.cli import UsageError
    from gpulogreg.io import DataError

    for error in (DataError, ModelFormatError, ContainerError, CheckpointError):
        assert issubclass(error, gpulogreg.InputError)
        assert issubclass(error, ValueError)
    assert issubclass(UsageError, gpulogreg.InputError)
    with pytest.raises(gpulogreg.InputError):
        LogisticRegression(C=-1.0).fit(np.ones((4, 1)), [0, 1, 0, 1])
    with pytest.raises(gpulogreg.InputError):
        LogisticRegression().fit(np.array([["a"], ["b"]]), [0, 1])
    assert not issubclass(np.linalg.LinAlgError, gpulogreg.InputError)


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = _run(
        capsys,
        ["fit", tmp_path / "absent.csv", "--target", "y", "--model", tmp_path / "m.glr", "--debug"],
    )
    assert code == 2
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("gpulogreg: error:")


def test_batch_size_is_passed_through(capsys, tmp_path, fitted):
    data, _ = fitted
    code, _, err = _run(
        capsys,
        ["fit", data, "--target", "label", "--id", "customer", "--model", tmp_path / "b.glr",
         "--solver", "minibatch", "--batch-size", "128", "--random-state", "0", "--max-iter", "3"],
    )  # fmt: skip
    assert code == 0, err
    model = gpulogreg.load(tmp_path / "b.glr")
    assert model.batch_size == 128
    assert model.solver == "minibatch"


def test_convergence_warning_is_one_line(capsys, tmp_path, fitted):
    data, _ = fitted
    code, _, err = _run(
        capsys,
        [
            "fit",
            data,
            "--target",
            "label",
            "--id",
            "customer",
            "--model",
            tmp_path / "w.glr",
            "--solver",
            "gd",
            "--max-iter",
            "1",
            "--tol",
            "1e-12",
        ],
    )
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gpulogreg: warning:"), err


def test_console_entry_point_in_a_subprocess(tmp_path):
    """The real process: exit status and stderr as a shell script sees them."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpulogreg.cli",
            "predict",
            "--model",
            str(tmp_path / "none.glr"),
            str(tmp_path / "none.csv"),
            "--output",
            str(tmp_path / "out.csv"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    _assert_one_line_error(proc.stderr)
    assert not (tmp_path / "out.csv").exists()


# --------------------------------------------------------------------------- data as stored
def _fit_json(capsys, data, *options) -> dict[str, object]:  # type: ignore[no-untyped-def]
    code, out, err = _run(capsys, ["fit", data, "--json", *options])
    assert code == 0, err
    return json.loads(out)


def test_fit_reads_a_hive_partitioned_directory_and_a_glob_as_the_single_file(
    capsys, tmp_path, problem
):
    columns = _columns(problem)
    order = np.argsort(problem["y"], kind="stable")  # partitions by label keep this order
    columns = {k: np.asarray(v)[order] for k, v in columns.items()}
    single = _write_table(tmp_path / "single.parquet", columns)
    for label in ("churn", "stay"):
        keep = columns["label"] == label
        part = tmp_path / "hive" / f"label={label}"
        part.mkdir(parents=True)
        rows = {k: v[keep] for k, v in columns.items() if k != "label"}
        for i, half in enumerate(np.array_split(np.arange(keep.sum()), 2)):
            pq.write_table(pa.table({k: v[half] for k, v in rows.items()}), part / f"{i}.parquet")
    models = {}
    for name, data in (
        ("single", single),
        ("hive", tmp_path / "hive"),
        ("glob", tmp_path / "hive" / "label=*" / "*.parquet"),
    ):
        models[name] = tmp_path / f"{name}.glr"
        summary = _fit_json(
            capsys, data, "--target", "label", "--id", "customer", "--model", models[name]
        )
        assert summary["rows"] == 600
        assert summary["features"] == 4
    reference = gpulogreg.load(models["single"])
    for name in ("hive", "glob"):
        model = gpulogreg.load(models[name])
        np.testing.assert_array_equal(model.coef_, reference.coef_)
        np.testing.assert_array_equal(model.classes_, reference.classes_)
    code, out, err = _run(
        capsys,
        ["evaluate", "--model", models["hive"], tmp_path / "hive", "--target", "label", "--json"],
    )
    assert code == 0, err
    assert json.loads(out)["rows"] == 600


def test_fit_with_a_delimiter_a_tsv_gz_and_an_explicit_format(capsys, tmp_path, problem):
    table = pa.table(_columns(problem))
    reference_path = _write_table(tmp_path / "d.csv", _columns(problem))
    semicolon = tmp_path / "d.txt"  # .txt would read as svmlight: --format says otherwise
    pcsv.write_csv(table, semicolon, write_options=pcsv.WriteOptions(delimiter=";"))
    tsv_gz = tmp_path / "d.tsv.gz"
    with pa.CompressedOutputStream(str(tsv_gz), "gzip") as stream:
        pcsv.write_csv(table, stream, write_options=pcsv.WriteOptions(delimiter="\t"))
    common = ["--target", "label", "--id", "customer"]
    _fit_json(capsys, reference_path, *common, "--model", tmp_path / "ref.glr")
    _fit_json(
        capsys, semicolon, *common, "--format", "csv", "--delimiter", ";",
        "--model", tmp_path / "semi.glr",
    )  # fmt: skip
    _fit_json(capsys, tsv_gz, *common, "--model", tmp_path / "tsv.glr")
    reference = gpulogreg.load(tmp_path / "ref.glr")
    for name in ("semi", "tsv"):
        model = gpulogreg.load(tmp_path / f"{name}.glr")
        np.testing.assert_array_equal(model.coef_, reference.coef_)
    code, _, err = _run(
        capsys,
        ["predict", "--model", tmp_path / "ref.glr", semicolon, "--format", "csv",
         "--delimiter", ";", "--id", "customer", "--output", tmp_path / "p.csv"],
    )  # fmt: skip
    assert code == 0, err
    assert pcsv.read_csv(tmp_path / "p.csv").num_rows == 600
    code, _, err = _run(
        capsys, ["fit", semicolon, *common, "--delimiter", "ab", "--model", tmp_path / "x.glr"]
    )
    assert code == 2
    assert "argument --delimiter" in err


def test_weight_changes_the_fit_as_sample_weight_does(capsys, tmp_path, problem):
    weights = np.random.default_rng(5).uniform(0.1, 3.0, size=600)
    data = _write_table(tmp_path / "w.parquet", {**_columns(problem), "w": weights})
    common = ["--target", "label", "--id", "customer", "--tol", "1e-10"]
    _fit_json(capsys, data, *common, "--weight", "w", "--model", tmp_path / "w.glr")
    weighted = gpulogreg.load(tmp_path / "w.glr")
    expected = LogisticRegression(tol=1e-10).fit(problem["X"], problem["y"], sample_weight=weights)
    np.testing.assert_allclose(weighted.coef_, expected.coef_, rtol=1e-10, atol=1e-12)
    unweighted = LogisticRegression(tol=1e-10).fit(problem["X"], problem["y"])
    assert np.abs(weighted.coef_ - unweighted.coef_).max() > 1e-3
    code, out, err = _run(
        capsys,
        ["evaluate", "--model", tmp_path / "w.glr", data, "--target", "label", "--weight", "w",
         "--json"],
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["weight_sum"] == pytest.approx(weights.sum())
    proba = weighted.predict_proba(problem["X"])
    reference = evaluate_predictions(
        problem["y"], proba, weighted.classes_, weighted.predict(problem["X"]), weights
    )
    assert metrics["log_loss"] == pytest.approx(reference["log_loss"], rel=1e-12)


def test_weighted_metrics_agree_with_scikit_learn():
    metrics_mod = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    classes = np.array([0, 1, 2])
    y = rng.choice(classes, size=300)
    proba = rng.dirichlet(np.ones(3), size=300)
    proba[:40] = proba[0]  # ties
    predicted = classes[proba.argmax(axis=1)]
    w = rng.uniform(0.0, 2.0, size=300)
    ours = evaluate_predictions(y, proba, classes, predicted, w)
    assert ours["log_loss"] == pytest.approx(
        metrics_mod.log_loss(y, proba, labels=classes, sample_weight=w)
    )
    assert ours["accuracy"] == pytest.approx(
        metrics_mod.accuracy_score(y, predicted, sample_weight=w)
    )
    assert ours["roc_auc"] == pytest.approx(
        metrics_mod.roc_auc_score(y, proba, multi_class="ovr", labels=classes, sample_weight=w)
    )
    np.testing.assert_allclose(
        ours["confusion"]["matrix"],
        metrics_mod.confusion_matrix(y, predicted, labels=classes, sample_weight=w),
    )
    yb = (y == 1).astype(int)
    pb = np.column_stack([1 - proba[:, 1], proba[:, 1]])
    binary = evaluate_predictions(yb, pb, np.array([0, 1]), (pb[:, 1] > 0.5).astype(int), w)
    assert binary["roc_auc"] == pytest.approx(
        metrics_mod.roc_auc_score(yb, pb[:, 1], sample_weight=w)
    )
    # Integer weights are repeated rows.
    counts = rng.integers(0, 3, size=300)
    repeated = evaluate_predictions(
        np.repeat(yb, counts), np.repeat(pb, counts, axis=0), np.array([0, 1]),
        np.repeat((pb[:, 1] > 0.5).astype(int), counts),
    )  # fmt: skip
    weighted = evaluate_predictions(
        yb, pb, np.array([0, 1]), (pb[:, 1] > 0.5).astype(int), counts.astype(float)
    )
    for key in ("log_loss", "accuracy", "roc_auc"):
        assert weighted[key] == pytest.approx(repeated[key], rel=1e-12)


# --------------------------------------------------------------------------- columns by name
def _shuffled_columns(problem: dict[str, np.ndarray]) -> dict[str, object]:
    """The same data with the feature columns in another order."""
    X = problem["X"]
    order = [2, 0, 3, 1]
    return {"customer": problem["id"], **{FEATURES[j]: X[:, j] for j in order}}


def test_predict_selects_columns_by_the_models_names(capsys, tmp_path, problem) -> None:  # type: ignore[no-untyped-def]
    """A model fitted in Python on a DataFrame scores a file with reordered columns by name,
    without a warning; --features in another order is reordered, never applied by position."""
    import pandas as pd

    frame = pd.DataFrame({name: problem["X"][:, j] for j, name in enumerate(FEATURES)})
    model = LogisticRegression().fit(frame, problem["y"])
    model_path = tmp_path / "python.glr"
    model.save(model_path)
    expected = model.predict_proba(frame)[:, 1]
    data = _write_table(tmp_path / "shuffled.csv", _shuffled_columns(problem))
    for extra in ([], ["--features", "f3,f2,f1,f0"]):
        out_path = tmp_path / "pred.csv"
        code, _, err = _run(
            capsys,
            ["predict", "--model", model_path, data, "--output", out_path, "--proba", *extra],
        )
        assert code == 0, err
        assert "warning" not in err
        got = _read_output(out_path).column("proba_stay").to_numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_predict_refuses_features_the_model_was_not_fitted_on(capsys, tmp_path, fitted) -> None:  # type: ignore[no-untyped-def]
    data, model_path = fitted
    code, _, err = _run(
        capsys,
        [
            "predict",
            "--model",
            model_path,
            data,
            "--output",
            tmp_path / "p.csv",
            "--features",
            "f0,f1,f2,label",
        ],
    )
    assert code == 2
    assert "not the model's features" in err
    assert "missing ['f3']" in err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------ svmlight: read at predict as at fit
def _svmlight_lines(X: np.ndarray, y: np.ndarray, *, base: int, skip_first: bool) -> str:
    """svmlight text of ``X`` with indices from ``base``; ``skip_first`` drops feature 0."""
    lines = []
    for row, label in zip(X, y, strict=True):
        pairs = [f"{j + base}:{v:.6g}" for j, v in enumerate(row) if not (skip_first and j == 0)]
        lines.append(f"{label} " + " ".join(pairs))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("base", [0, 1])
def test_svmlight_test_file_is_read_with_the_training_files_index_base(capsys, tmp_path, base):
    # The case (base 0): the test file lacks index 0, which "auto" would
    # read as one-based, shifting every feature by one. The model stores the
    # base its training file settled, and predict/evaluate read with it.
    X, y = make_classification(400, 4, seed=3)
    X[:, 0] *= 4.0  # a feature that matters, so that a shift shows
    train, test = tmp_path / "train.svm", tmp_path / "test.svm"
    train.write_text(_svmlight_lines(X, y, base=base, skip_first=False))
    test.write_text(_svmlight_lines(X, y, base=base, skip_first=True))
    model = tmp_path / "m.glr"
    code, _, err = _run(capsys, ["fit", train, "--model", model])
    assert code == 0, err
    code, out, err = _run(capsys, ["evaluate", "--model", model, test, "--json"])
    assert code == 0, err
    reference = LogisticRegression().fit(X, y)
    X_test = X.copy()
    X_test[:, 0] = 0.0
    assert json.loads(out)["accuracy"] == pytest.approx(reference.score(X_test, y), abs=0.01)
    output = tmp_path / "p.csv"
    code, _, err = _run(capsys, ["predict", "--model", model, test, "--output", output])
    assert code == 0, err
    predicted = pcsv.read_csv(output).column("prediction").to_numpy()
    np.testing.assert_array_equal(predicted, reference.predict(X_test))


def test_one_based_model_refuses_a_test_file_with_index_zero(capsys, tmp_path):
    X, y = make_classification(100, 3, seed=4)
    train, test = tmp_path / "train.svm", tmp_path / "test.svm"
    train.write_text(_svmlight_lines(X, y, base=1, skip_first=False))
    test.write_text(_svmlight_lines(X, y, base=0, skip_first=False))
    model = tmp_path / "m.glr"
    assert _run(capsys, ["fit", train, "--model", model])[0] == 0
    code, _, err = _run(capsys, ["evaluate", "--model", model, test])
    assert code == 2
    assert "index 0 found in a one-based file" in err


def test_index_base_option_reads_a_zero_based_training_file_without_index_zero(capsys, tmp_path):
    X, y = make_classification(200, 3, seed=5)
    train = tmp_path / "train.svm"
    train.write_text(_svmlight_lines(X, y, base=0, skip_first=True))
    model = tmp_path / "m.glr"
    code, out, err = _run(capsys, ["fit", train, "--model", model, "--index-base", "0", "--json"])
    assert code == 0, err
    assert json.loads(out)["features"] == 3  # column 0 is there, all zeros
    loaded = gpulogreg.load(model)
    assert loaded.coef_[0, 0] == 0.0


# --------------------------------------------------------------------------- outputs checked first
#: An output option of each command, and an extension its files may have.
_OUTPUTS = {
    "fit": ("--model", ".glr"),
    "predict": ("--output", ".csv"),
    "bench-json": ("--json-out", ".jsonl"),
    "bench-plot": ("--plot", ".png"),
}


def _command_writing(command: str, output: Path, tmp_path: Path) -> list[object]:
    """``command`` with ``output`` as its output and inputs that do not exist."""
    absent = tmp_path / "absent.csv"
    if command == "fit":
        return ["fit", absent, "--target", "label", "--model", output]
    if command == "predict":
        return ["predict", "--model", tmp_path / "absent.glr", absent, "--output", output]
    option = _OUTPUTS[command][0]
    return ["bench", "--rows", "50", "--cols", "2", "--quiet", option, output]


def _output_path(case: str, ext: str, tmp_path: Path) -> Path:
    if case == "missing_directory":
        return tmp_path / "no" / f"out{ext}"
    if case == "bad_extension":
        return tmp_path / "out.xlsx"
    if case == "character_device":
        return Path(os.devnull)  # never written: the refusal comes first
    path = tmp_path / f"out{ext}"
    if case == "directory":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)
    elif case == "unwritable_directory":
        path = tmp_path / "locked" / f"out{ext}"
        path.parent.mkdir()
    return path


@pytest.fixture
def nothing_runs(monkeypatch):  # type: ignore[no-untyped-def]
    """Reading data, loading a model or running the benchmark fails the test."""
    import gpulogreg.benchmark
    import gpulogreg.io
    import gpulogreg.persistence

    def must_not_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("ran before the outputs were checked")

    monkeypatch.setattr(gpulogreg.io, "read_data", must_not_run)
    monkeypatch.setattr(gpulogreg.persistence, "load_with_metadata", must_not_run)
    monkeypatch.setattr(gpulogreg.benchmark, "run", must_not_run)


@pytest.mark.parametrize(
    ("command", "case", "message"),
    [
        ("fit", "missing_directory", "output directory does not exist"),
        ("fit", "directory", "is a directory"),
        ("fit", "fifo", "a FIFO, not a regular file"),
        ("fit", "character_device", f"refusing to replace {os.devnull}: a character device"),
        ("fit", "unwritable_directory", "output directory is not writable"),
        ("predict", "bad_extension", "must end in .csv, .tsv, .jsonl, .ndjson, .parquet or .pq"),
        ("predict", "missing_directory", "output directory does not exist"),
        ("predict", "directory", "is a directory"),
        ("predict", "fifo", "a FIFO, not a regular file"),
        ("predict", "character_device", "a character device, not a regular file"),
        ("bench-json", "missing_directory", "output directory does not exist"),
        ("bench-plot", "directory", "is a directory"),
    ],
)
def test_outputs_are_checked_before_anything_is_read(  # type: ignore[no-untyped-def]
    capsys, monkeypatch, tmp_path, nothing_runs, command, case, message
):
    option, ext = _OUTPUTS[command]
    output = _output_path(case, ext, tmp_path)
    if case == "unwritable_directory":  # root may write anywhere: deny it this directory
        real_access = os.access
        denied = str(output.parent)
        monkeypatch.setattr(os, "access", lambda p, m: p != denied and real_access(p, m))
    before = sorted(tmp_path.rglob("*"))
    code, out, err = _run(capsys, _command_writing(command, output, tmp_path))
    assert code == 2, err
    _assert_one_line_error(err)
    assert err.startswith(f"gpulogreg: error: {option}: "), err
    assert message in err
    assert out == ""
    assert sorted(tmp_path.rglob("*")) == before


def test_outputs_through_symlinks_replace_their_targets(capsys, tmp_path, fitted) -> None:  # type: ignore[no-untyped-def]
    data, _ = fitted
    store = tmp_path / "store"
    store.mkdir()
    for name in ("model.glr", "pred.csv"):
        (store / name).write_text("old\n")
        (tmp_path / f"link-{name}").symlink_to(store / name)
    code, _, err = _run(
        capsys,
        ["fit", data, "--target", "label", "--id", "customer",
         "--model", tmp_path / "link-model.glr"],
    )  # fmt: skip
    assert code == 0, err
    code, _, err = _run(
        capsys,
        ["predict", "--model", tmp_path / "link-model.glr", data, "--id", "customer",
         "--output", tmp_path / "link-pred.csv"],
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "link-model.glr").is_symlink()
    assert (tmp_path / "link-pred.csv").is_symlink()
    assert gpulogreg.load(store / "model.glr").classes_.tolist() == ["churn", "stay"]
    assert _read_output(store / "pred.csv").num_rows == 600
    assert sorted(p.name for p in store.iterdir()) == ["model.glr", "pred.csv"]


@pytest.mark.parametrize("case", ["fit_over_data", "predict_over_data", "predict_over_model"])
def test_an_output_never_replaces_an_input(capsys, tmp_path, problem, fitted, case):
    # The same file under another name (a symbolic link ending in .csv), so
    # that only the same-file check can refuse it.
    _, model = fitted
    data = _write_table(tmp_path / "data.csv", _columns(problem))
    link = tmp_path / "link.csv"
    link.symlink_to(model if case == "predict_over_model" else data)
    if case == "fit_over_data":
        argv = ["fit", data, "--target", "label", "--id", "customer", "--model", link]
    else:
        argv = ["predict", "--model", model, data, "--id", "customer", "--output", link]
    before = {p: p.read_bytes() for p in (data, model)}
    code, _, err = _run(capsys, argv)
    assert code == 2
    _assert_one_line_error(err)
    assert f"{link} is an input of this command" in err
    assert {p: p.read_bytes() for p in before} == before


# --------------------------------------------------------------------------- fit --summary
def test_fit_summary_prints_the_coefficient_table_and_json_holds_it(capsys, tmp_path, problem):
    data = _write_table(tmp_path / "train.csv", _columns(problem))
    model = tmp_path / "m.glr"
    argv = ["fit", data, "--target", "label", "--id", "customer", "--model", model]
    code, out, err = _run(capsys, [*argv, "--penalty", "none", "--summary"])
    assert code == 0, err
    assert all(word in out for word in ("std err", "intercept", "f3"))
    code, out, err = _run(capsys, [*argv, "--summary", "--cov-type", "HC0", "--json"])
    assert code == 0
    assert "Laplace approximation" in err  # the default C=1 penalises: one warning line
    rows = json.loads(out)["coefficients"]
    assert [r["parameter"] for r in rows] == ["intercept", *FEATURES]
    X = problem["X"]
    y = problem["y"]
    expected = gpulogreg.load(model).inference(X, y, cov_type="HC0")
    np.testing.assert_allclose([r["std_err"] for r in rows], expected.bse, rtol=1e-10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--summary", "--penalty", "l1"], "--summary needs an L2 penalty"),
        (["--summary", "--class-weight", "balanced"], "not available with --class-weight"),
        (["--cov-type", "HC0"], "--cov-type is the covariance of the --summary table"),
    ],
)
def test_summary_options_are_refused_before_the_work(
    capsys, tmp_path, problem, nothing_runs, options, message
):
    data = _write_table(tmp_path / "train.csv", _columns(problem))
    model = tmp_path / "m.glr"
    code, _, err = _run(capsys, ["fit", data, "--target", "label", "--model", model, *options])
    assert code == 2
    assert message in err
    assert not model.exists()


def test_summary_warnings_name_the_files_columns(capsys, tmp_path, problem):
    columns = _columns(problem)
    columns["f3"] = 2.0 * columns["f0"]  # collinear with f0
    data = _write_table(tmp_path / "train.csv", columns)
    argv = ["fit", data, "--target", "label", "--id", "customer", "--model", tmp_path / "m.glr"]
    code, _, err = _run(capsys, [*argv, "--penalty", "none", "--summary"])
    assert code == 0, err
    assert "standard errors of f0, f3 are undefined" in err


# --------------------------------------------------------------------------- cv
def test_cv_prints_the_score_table_and_saves_the_refitted_model(capsys, tmp_path, data_file):
    from gpulogreg import LogisticRegressionCV

    model_path = tmp_path / "best.glr"
    args = [
        "cv", data_file, "--target", "label", "--id", "customer", "--Cs", "0.01,1,100",
        "--cv", "3", "--model", model_path,
    ]  # fmt: skip
    code, out, err = _run(capsys, [*args, "--json"])
    assert code == 0, err
    summary = json.loads(out)
    table = pcsv.read_csv(data_file) if data_file.suffix == ".csv" else pq.read_table(data_file)
    X = np.column_stack([table[name].to_numpy() for name in FEATURES])
    y = table["label"].to_numpy(zero_copy_only=False)
    expected = LogisticRegressionCV(Cs=[0.01, 1, 100], cv=3, scoring="neg_log_loss").fit(X, y)
    assert summary["C"] == expected.C_
    means = [row["mean"] for row in summary["scores"]]
    np.testing.assert_allclose(means, expected.scores_.mean(axis=0)[0], atol=1e-9)
    assert [row["best"] for row in summary["scores"]].count(True) == 1
    assert summary["passes"] > 0
    loaded = gpulogreg.load(model_path)
    np.testing.assert_allclose(loaded.coef_, expected.coef_, atol=1e-9)
    code, out, err = _run(capsys, args)
    assert code == 0, err
    assert "<- best" in out
    assert "3-fold cross-validation of 3 grid points" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--Cs", "1,x"], "--Cs takes a count or comma-separated numbers"),
        (["--cv", "1"], "cv must be at least 2 folds"),
        (["--l1-ratios", "0,2"], "l1_ratios must be an array-like of numbers between 0 and 1"),
    ],
)
def test_cv_bad_settings_give_one_line(capsys, tmp_path, data_file, extra, message):
    args = ["cv", data_file, "--target", "label", "--id", "customer", "--model", tmp_path / "m"]
    code, _out, err = _run(capsys, [*args, *extra])
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_cv_streams_data_over_the_memory_budget(capsys, tmp_path, data_file):
    args = ["cv", data_file, "--target", "label", "--id", "customer", "--Cs", "0.1,10"]
    code, out, err = _run(capsys, [*args, "--model", tmp_path / "a.glr", "--json"])
    assert code == 0, err
    whole = json.loads(out)
    more = ["--chunk-rows", "150", "--model", tmp_path / "b.glr", "--json"]
    code, out, err = _run(capsys, [*args, *more])
    assert code == 0, err
    streamed = json.loads(out)
    assert streamed["streamed"] is True
    assert not whole["streamed"]
    assert streamed["C"] in (0.1, 10.0)  # hashed folds, not the stratified ones of whole data
    assert all(np.isfinite(row["mean"]) for row in streamed["scores"])


def test_cv_streamed_scores_roc_auc(capsys, tmp_path, data_file):
    args = ["cv", data_file, "--target", "label", "--id", "customer", "--Cs", "0.001,0.1,10"]
    more = ["--scoring", "roc_auc", "--chunk-rows", "150", "--model", tmp_path / "m.glr"]
    code, out, err = _run(capsys, [*args, *more, "--json"])
    assert code == 0, err
    streamed = json.loads(out)
    assert streamed["streamed"] is True
    means = [row["mean"] for row in streamed["scores"]]
    assert all(0.5 < mean <= 1.0 for mean in means)  # an AUC of the separable problem
    assert (tmp_path / "m.glr").exists()
