"""The one progress hook: records for listeners, tqdm's bar and the plain fallback."""

from __future__ import annotations

import io
import sys
import types
from typing import Any

import numpy as np
import pytest

from gpulogreg import Dataset, LogisticRegression
from gpulogreg._progress import Reporter
from gpulogreg._typing import History
from tests._helpers import make_classification

SERIES = ("objective", "optimality", "step")


class _Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tqdm`` fail, as where it is not installed."""
    for name in ("tqdm", "tqdm.auto"):
        monkeypatch.setitem(sys.modules, name, None)


def _assert_records_are_the_history(records: list[dict[str, Any]], history: History) -> None:
    assert [r["iteration"] for r in records] == list(range(1, len(history) + 1))
    for name in SERIES:
        assert [r[name] for r in records] == getattr(history, name)
    assert [r["seconds"] for r in records] == history.elapsed


# --------------------------------------------------------------------------- records
@pytest.mark.parametrize("solver", ["newton", "lbfgs", "gd"])
def test_callback_gets_one_record_per_iteration_equal_to_the_history(solver: str) -> None:
    X, y = make_classification(500, 4, seed=1)
    records: list[dict[str, Any]] = []
    model = LogisticRegression(solver=solver, callback=records.append).fit(X, y)
    assert len(records) == model.n_iter_[0]
    _assert_records_are_the_history(records, model.history_)
    assert {r["solver"] for r in records} == {solver}
    assert {r["task"] for r in records} == {0}
    assert "passes" not in records[0]  # in memory: not counted


def test_one_vs_rest_records_name_their_task() -> None:
    X, y = make_classification(600, 4, seed=2, n_classes=3)
    records: list[dict[str, Any]] = []
    model = LogisticRegression(multi_class="ovr", callback=records.append).fit(X, y)
    for task, history in enumerate(model.history_):
        _assert_records_are_the_history([r for r in records if r["task"] == task], history)
    assert len(records) == model.n_iter_.sum()


@pytest.mark.filterwarnings("ignore:minibatch failed to converge")
def test_minibatch_records_every_epoch_with_its_validation_loss() -> None:
    X, y = make_classification(1000, 3, seed=3)
    records: list[dict[str, Any]] = []
    model = LogisticRegression(
        solver="minibatch", max_iter=4, early_stopping=True, random_state=0, callback=records.append
    ).fit(X, y)
    _assert_records_are_the_history(records, model.history_)
    assert [r["validation_loss"] for r in records] == model.history_.validation_loss


def test_dataset_fit_records_the_passes_over_the_data() -> None:
    X, y = make_classification(900, 3, seed=4)
    records: list[dict[str, Any]] = []
    data = Dataset.from_arrays(X, y, chunk_rows=200)
    model = LogisticRegression(solver="lbfgs", callback=records.append).fit(data)
    passes = model.history_.passes
    assert len(passes) == len(model.history_)
    assert [r["passes"] for r in records] == passes
    assert passes == sorted(passes)
    assert passes[0] >= 1
    assert passes[-1] <= model.n_passes_


def test_a_listener_returning_true_stops_the_fit() -> None:
    X, y = make_classification(500, 4, seed=5)
    with pytest.warns(Warning, match="callback"):
        model = LogisticRegression(solver="gd", callback=lambda r: r["iteration"] >= 3).fit(X, y)
    assert model.n_iter_[0] == 3
    assert not model.converged_


def test_callback_must_be_callable() -> None:
    X, y = make_classification(100, 2)
    with pytest.raises(TypeError, match="callback must be callable"):
        LogisticRegression(callback="log.jsonl").fit(X, y)


def test_a_model_with_a_callback_saves_without_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gpulogreg import load
    from gpulogreg.persistence import load_with_metadata

    X, y = make_classification(200, 3)
    model = LogisticRegression(callback=lambda r: None).fit(X, y)
    model.save(tmp_path / "m.glr")
    loaded, meta = load_with_metadata(tmp_path / "m.glr")
    assert loaded.callback is None
    assert "callback" in meta["params_not_saved"]
    np.testing.assert_array_equal(load(tmp_path / "m.glr").coef_, model.coef_)


def test_history_entry_and_as_dict_hold_passes_only_where_recorded() -> None:
    history = History()
    history.record(1.0, 0.5, 1.0)
    assert set(history.entry()) == {"iteration", "objective", "optimality", "step", "seconds"}
    assert "passes" not in history.as_dict()
    counted = History()
    counted.record(1.0, 0.5, 1.0, passes=3)
    assert counted.entry(0)["passes"] == 3
    assert counted.as_dict()["passes"] == [3.0]


# --------------------------------------------------------------------------- the bar
def _fit_with_bar(stream: io.StringIO, **params: Any) -> LogisticRegression:
    X, y = make_classification(500, 4, seed=6)
    reporter_stream = sys.stderr
    sys.stderr = stream
    try:
        return LogisticRegression(verbose=1, **params).fit(X, y)
    finally:
        sys.stderr = reporter_stream


def test_tqdm_bar_on_a_terminal_reads_converged_when_full() -> None:
    pytest.importorskip("tqdm")
    stream = _Terminal()
    model = _fit_with_bar(stream, solver="lbfgs")
    text = stream.getvalue()
    assert "lbfgs optimality -> tol (log) |" in text  # the bar is labelled with its measure
    final = text.split("\r")[-1]
    assert final.startswith("lbfgs converged |")
    assert "| 100%, iter" in final
    assert f"iter {model.n_iter_[0]:4d}/1000" in final
    assert "lbfgs: converged" in final


def test_plain_bar_without_tqdm_on_a_terminal(no_tqdm: None) -> None:
    stream = _Terminal()
    _fit_with_bar(stream, solver="newton")
    final = stream.getvalue().split("\r")[-1]
    assert final.startswith("newton converged [####################] 100%, iter")
    assert "newton: converged" in final


def test_plain_lines_on_a_stream_that_is_no_terminal() -> None:
    # tqdm or not: a log file gets ordinary lines, never carriage returns.
    stream = io.StringIO()
    _fit_with_bar(stream, solver="lbfgs")
    text = stream.getvalue()
    assert "\r" not in text
    assert "lbfgs converged [####################] 100%" in text


def test_minibatch_bar_counts_epochs_and_is_full_when_converged(no_tqdm: None) -> None:
    stream = _Terminal()
    model = _fit_with_bar(stream, solver="minibatch", max_iter=200, tol=1e-2, random_state=0)
    assert model.converged_
    assert model.n_iter_[0] < 200
    final = stream.getvalue().split("\r")[-1]
    assert final.startswith("minibatch converged [####################] 100%, epoch")
    assert "minibatch epochs [" in stream.getvalue()


def test_stopped_bar_is_labelled_stopped_and_not_full(no_tqdm: None) -> None:
    stream = _Terminal()
    with pytest.warns(Warning, match="max_iter=2"):
        _fit_with_bar(stream, solver="gd", max_iter=2)
    final = stream.getvalue().split("\r")[-1]
    assert final.startswith("gd stopped [")
    assert "100%" not in final


def test_notebook_tqdm_is_used_on_a_stream_that_is_no_terminal(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    drawn: list[dict[str, Any]] = []

    class NotebookBar:  # stands in for tqdm.notebook.tqdm
        n = 0

        def __init__(self, **kwargs: Any) -> None:
            drawn.append(kwargs)

        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: None

    NotebookBar.__module__ = "tqdm.notebook"
    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=NotebookBar))
    reporter = Reporter(bar=True, stream=io.StringIO())
    reporter.begin("lbfgs", "optimality -> tol (log)")
    assert drawn
    assert drawn[0]["desc"] == "lbfgs optimality -> tol (log)"


def test_reporter_without_bar_or_listener_is_silent(capsys) -> None:  # type: ignore[no-untyped-def]
    reporter = Reporter()
    reporter.begin("lbfgs", "optimality -> tol (log)")
    assert not reporter.watched
    assert reporter.iteration({"iteration": 1}, fraction=0.5, text="x") is False
    reporter.detail("chunk 1/2")
    reporter.note("resuming")
    reporter.end("done", converged=True)
    assert capsys.readouterr() == ("", "")


def test_dataset_fit_shows_its_chunks_next_to_the_bar(no_tqdm: None) -> None:
    X, y = make_classification(900, 3, seed=4)
    stream = _Terminal()
    reporter = Reporter(bar=True, stream=stream)
    reporter.begin("lbfgs", "optimality -> tol (log)")
    from gpulogreg.backends.chunked import ChunkedBackend

    backend = ChunkedBackend(Dataset.from_arrays(X, y, chunk_rows=300), progress=reporter)
    backend.loss_grad(np.zeros(backend.layout.n_params))
    assert "pass 1: chunk 1/3" in stream.getvalue()
    assert reporter.passes == 1
