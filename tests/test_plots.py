"""Plots: ``history_.plot``, ``evaluate --plot`` and ``bench --plot``, all without pyplot."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gpulogreg import Dataset, LogisticRegression
from gpulogreg.cli import main
from gpulogreg.plots import EvaluationCurves
from tests._helpers import make_classification

matplotlib = pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    """A PNG file that matplotlib reads back as an image."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    assert image.shape[0] > 100
    assert image.shape[1] > 100


def _write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    header = ",".join(f"f{j}" for j in range(X.shape[1])) + ",label"
    rows = [",".join(f"{v:.17g}" for v in x) + f",{label}" for x, label in zip(X, y, strict=True)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


# --------------------------------------------------------------------------- history_.plot
def test_history_plot_draws_the_gap_and_the_optimality_against_time() -> None:
    X, y = make_classification(500, 4, seed=1)
    history = LogisticRegression(solver="newton").fit(X, y).history_
    ax = history.plot()
    gap, optimality = ax.get_lines()
    assert (gap.get_label(), optimality.get_label()) == ("objective gap", "optimality")
    np.testing.assert_array_equal(gap.get_xdata(), history.elapsed)
    expected_gap = np.asarray(history.objective) - min(history.objective)
    expected_gap[expected_gap <= 0] = np.nan  # a log scale has no zero
    np.testing.assert_array_equal(gap.get_ydata(), expected_gap)
    np.testing.assert_array_equal(optimality.get_ydata(), history.optimality)
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "seconds since the solver started"


def test_history_plot_against_iterations_and_passes_on_given_axes() -> None:
    from gpulogreg._plot import new_figure

    X, y = make_classification(600, 3, seed=2)
    history = (
        LogisticRegression(solver="lbfgs").fit(Dataset.from_arrays(X, y, chunk_rows=200)).history_
    )
    fig = new_figure("test")
    left, right = fig.subplots(1, 2)
    reference = min(history.objective) - 1e-3
    assert history.plot(left, x="iteration", reference=reference) is left
    history.plot(right, x="passes")
    gap = left.get_lines()[0]
    np.testing.assert_array_equal(gap.get_xdata(), np.arange(1, len(history) + 1))
    np.testing.assert_allclose(gap.get_ydata(), np.asarray(history.objective) - reference)
    np.testing.assert_array_equal(right.get_lines()[1].get_xdata(), history.passes)
    assert right.get_xlabel() == "passes over the data"


def test_history_plot_refuses_passes_it_did_not_record() -> None:
    X, y = make_classification(200, 3)
    history = LogisticRegression().fit(X, y).history_
    with pytest.raises(ValueError, match="records no passes"):
        history.plot(x="passes")
    with pytest.raises(ValueError, match="x must be one of"):
        history.plot(x="time")


def test_minibatch_history_plots_against_epochs() -> None:
    X, y = make_classification(500, 3)
    model = LogisticRegression(solver="minibatch", max_iter=3, learning_rate="cosine")
    ax = model.fit(X, y).history_.plot(x="iteration")
    assert ax.get_xlabel() == "epoch"


def test_plotting_leaves_the_backend_and_pyplot_alone(tmp_path: Path) -> None:
    """In a fresh interpreter whose user chose a backend: ours never imports pyplot."""
    script = textwrap.dedent(
        f"""
        import sys
        import matplotlib
        matplotlib.use("svg")
        from gpulogreg import LogisticRegression
        from gpulogreg.cli import main
        from tests._helpers import make_classification
        X, y = make_classification(300, 3)
        LogisticRegression().fit(X, y).history_.plot().figure.savefig({str(tmp_path / "h.png")!r})
        assert main(["bench", "--rows", "300", "--cols", "3", "--repeat", "1", "--no-sklearn",
                     "--conditioning", "well", "--solvers", "newton", "--backends", "numpy",
                     "--plot", {str(tmp_path / "b.png")!r}, "--quiet"]) == 0
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        print(matplotlib.get_backend())
        """
    )
    root = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "svg"
    _assert_png(tmp_path / "h.png")
    _assert_png(tmp_path / "b.png")


def test_history_plot_keeps_this_process_backend() -> None:
    before = matplotlib.get_backend()
    X, y = make_classification(200, 3)
    LogisticRegression().fit(X, y).history_.plot()
    assert matplotlib.get_backend() == before


# --------------------------------------------------------------------------- evaluate --plot
def test_evaluate_plot_writes_roc_and_calibration_png(capsys, tmp_path: Path) -> None:
    X, y = make_classification(800, 4, seed=3)
    data = _write_csv(tmp_path / "test.csv", X, y)
    model, png = tmp_path / "m.glr", tmp_path / "roc.png"
    assert main(["fit", str(data), "--target", "label", "--model", str(model)]) == 0
    code = main(["evaluate", str(data), "--model", str(model), "--plot", str(png), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert '"plot": ' in out.splitlines()[-1]
    _assert_png(png)


def test_evaluate_plot_multiclass_draws_one_curve_per_class(capsys, tmp_path: Path) -> None:
    X, y = make_classification(900, 4, seed=4, n_classes=3)
    data = _write_csv(tmp_path / "test.csv", X, y)
    model, png = tmp_path / "m.glr", tmp_path / "roc.png"
    assert main(["fit", str(data), "--target", "label", "--model", str(model)]) == 0
    code = main(["evaluate", str(data), "--model", str(model), "--plot", str(png)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"written to {png}" in out
    _assert_png(png)


def test_evaluate_plot_is_refused_before_the_data_is_read(capsys, tmp_path: Path) -> None:
    code = main(["evaluate", str(tmp_path / "missing.csv"), "--model", "m.glr",
                 "--plot", str(tmp_path / "no_dir" / "roc.png")])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2
    assert "--plot" in err


def test_evaluation_curves_match_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 5000)
    p1 = 1 / (1 + np.exp(-(2.0 * y - 1 + rng.normal(size=y.size))))
    proba = np.column_stack([1 - p1, p1])
    curves = EvaluationCurves(np.array([0, 1]))
    for rows in np.array_split(np.arange(y.size), 3):  # by chunks, as a stream would
        curves.add(y[rows], proba[rows])
    fpr, tpr = curves.roc(0)
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert area == pytest.approx(metrics.roc_auc_score(y, p1), abs=1e-3)
    mean, fraction = curves.calibration(0)
    from sklearn.calibration import calibration_curve

    expected_fraction, expected_mean = calibration_curve(y, p1, n_bins=10)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(fraction, expected_fraction, rtol=1e-12)


def test_evaluation_curves_without_negatives_have_no_roc() -> None:
    curves = EvaluationCurves(np.array(["a", "b"]))
    curves.add(np.array([1, 1]), np.array([[0.2, 0.8], [0.0, 1.0]]))
    assert curves.roc(0) is None
    assert curves.label(0) == "class b"
