"""``--log-json``: the fit's progress as JSON lines, written while it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gpulogreg
from gpulogreg._jsonlines import JsonLinesLog, jsonable
from gpulogreg.cli import main
from tests._helpers import make_classification


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    X, y = make_classification(400, 3, seed=7)
    path = tmp_path / "train.csv"
    rows = [",".join(f"{v:.17g}" for v in x) + f",{label}" for x, label in zip(X, y, strict=True)]
    path.write_text("a,b,c,label\n" + "\n".join(rows) + "\n")
    return path


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _fit(capsys, train_csv: Path, *options: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    model = train_csv.with_name("model.glr")
    code = main(["fit", str(train_csv), "--target", "label", "--model", str(model), *options])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("solver", ["lbfgs", "newton", "minibatch"])
def test_log_has_a_start_record_one_per_iteration_and_a_final_record(
    capsys, train_csv: Path, solver: str
) -> None:
    log = train_csv.with_name("fit.jsonl")
    code, _, err = _fit(
        capsys, train_csv, "--solver", solver, "--max-iter", "50", "--log-json", str(log)
    )
    assert code == 0, err
    model = gpulogreg.load(train_csv.with_name("model.glr"))
    records = _records(log.read_text())
    assert len(records) == model.n_iter_[0] + 2
    start, *iterations, end = records
    assert start["event"] == "start"
    assert start["command"] == "fit"
    assert start["data"] == str(train_csv)
    assert (start["rows"], start["features"]) == (400, 3)
    assert start["solver"] == solver
    assert start["parameters"]["max_iter"] == 50
    assert start["version"] == gpulogreg.__version__
    assert start["time"].endswith("+00:00")
    history = model.history_
    assert [r["event"] for r in iterations] == ["iteration"] * len(history)
    assert [r["iteration"] for r in iterations] == list(range(1, len(history) + 1))
    for name in ("objective", "optimality", "step"):
        assert [r[name] for r in iterations] == getattr(history, name)
    assert [r["seconds"] for r in iterations] == history.elapsed
    assert end["event"] == "end"
    assert end["converged"] == model.converged_
    assert end["iterations"] == model.n_iter_[0]
    assert end["objective"] == model.objective_
    assert end["model"] == str(train_csv.with_name("model.glr"))
    assert end["seconds"] > 0


def test_log_on_stderr_keeps_stdout_for_the_summary(capsys, train_csv: Path) -> None:
    code, out, err = _fit(capsys, train_csv, "--log-json", "-", "--json")
    assert code == 0, err
    records = _records(err)  # nothing else on stderr: no bar beside the log
    assert [r["event"] for r in (records[0], records[-1])] == ["start", "end"]
    assert json.loads(out)["iterations"] == len(records) - 2


def test_a_failed_fit_ends_its_log_with_the_error(capsys, tmp_path: Path) -> None:
    path = tmp_path / "one_class.csv"
    path.write_text("a,label\n1,0\n2,0\n3,0\n")
    log = tmp_path / "fit.jsonl"
    code = main(["fit", str(path), "--target", "label", "--model", str(tmp_path / "m.glr"),
                 "--log-json", str(log)])  # fmt: skip
    capsys.readouterr()
    assert code == 2
    *_, end = _records(log.read_text())
    assert end["event"] == "end"
    assert "only 1 class" in end["error"]


def test_log_json_may_not_replace_an_input(capsys, train_csv: Path) -> None:
    before = train_csv.read_text()
    code, _, err = _fit(capsys, train_csv, "--log-json", str(train_csv))
    assert code == 2
    assert "--log-json" in err
    assert "is an input" in err
    assert train_csv.read_text() == before


def test_demo_writes_the_log_too(capsys, tmp_path: Path) -> None:
    log = tmp_path / "demo.jsonl"
    code = main(["demo", "--rows", "2000", "--cols", "4", "--test-rows", "0", "--json",
                 "--log-json", str(log)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    records = _records(log.read_text())
    assert records[0]["command"] == "demo"
    assert records[0]["data"] is None
    assert records[0]["rows"] == 2000
    assert len(records) == json.loads(out)["iterations"] + 2
    assert records[-1]["model"] is None


def test_records_are_flushed_as_they_are_written(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with JsonLinesLog.open(str(path)) as log:
        log.start(command="fit")
        log({"iteration": 1, "objective": float("nan")})
        seen = _records(path.read_text())  # read by another handle, before the log ends
        log.end(converged=True)
    assert [r["event"] for r in seen] == ["start", "iteration"]
    assert seen[1]["objective"] is None  # JSON has no NaN
    end = _records(path.read_text())[-1]
    assert (end["event"], end["converged"]) == ("end", True)
    assert log.stream.closed


def test_jsonable_makes_plain_values() -> None:
    value = {"a": np.float32(1.5), 2: [np.int64(3), np.inf], "x": np.arange(2)}
    assert jsonable(value) == {"a": 1.5, "2": [3, None], "x": [0, 1]}
