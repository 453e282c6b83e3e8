"""The figures the command line writes: ROC and calibration curves, and saving a PNG.

:class:`EvaluationCurves` gathers what the curves of ``gpulogreg evaluate
--plot`` need from predicted probabilities, chunk by chunk in memory that does
not grow with the rows: per curve, counts of the positive and the negative rows
in :data:`ROC_BINS` bins of the decision value (the logit of the probability),
and the rows, positives and summed probabilities in :data:`CALIBRATION_BINS`
equal bins of the probability. The ROC curve joins the bins' corners, so rows
within one bin count as tied (a bin is 1/50 of a logit unit wide). A binary
model has one curve (its second class's probability); a multiclass model one
per class, that class against the rest.

Figures are built without pyplot (:func:`gpulogreg._plot.new_figure`) and
written atomically (:func:`save_png`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from gpulogreg._files import atomic_write
from gpulogreg._plot import new_figure

__all__ = ["CALIBRATION_BINS", "ROC_BINS", "EvaluationCurves", "save_png"]

#: Bins of the decision value (logit of the probability) behind the ROC curve.
ROC_BINS = 4000
#: The bins span logits in [-LOGIT_RANGE, LOGIT_RANGE] (float64 probabilities
#: round to 1 beyond a logit of about 37); values beyond go to the end bins.
LOGIT_RANGE = 40.0
#: Equal-width probability bins of the calibration (reliability) curve.
CALIBRATION_BINS = 10
#: Resolution of the written PNGs.
DPI = 110


def save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as a PNG to ``path``, atomically (:func:`gpulogreg._files.atomic_write`)."""
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=DPI)


class EvaluationCurves:
    """ROC and calibration curves of a classifier's probabilities, accumulated by chunks.

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        The model's classes, in the order of the probability columns.

    Notes
    -----
    :meth:`add` once with all the rows, or once per chunk of rows; then
    :meth:`figure` and :func:`save_png`.
    """

    def __init__(self, classes: Any) -> None:
        self.classes = np.asarray(classes)
        k = len(self.classes)
        #: Probability columns with a curve: the positive class, or every class.
        self.columns = [1] if k == 2 else list(range(k))
        n = len(self.columns)
        self.roc_counts = np.zeros((n, 2, ROC_BINS), dtype=np.int64)  # [curve, neg/pos, bin]
        self.calibration_rows = np.zeros((n, CALIBRATION_BINS), dtype=np.float64)
        self.calibration_positives = np.zeros((n, CALIBRATION_BINS), dtype=np.float64)
        self.calibration_sums = np.zeros((n, CALIBRATION_BINS), dtype=np.float64)

    def add(self, y_index: Any, proba: Any) -> None:
        """Count a chunk: ``y_index`` the true class indices, ``proba`` of shape (rows, classes)."""
        y_index = np.asarray(y_index)
        proba = np.asarray(proba, dtype=np.float64)
        for j, column in enumerate(self.columns):
            p = proba[:, column]
            positive = y_index == column
            bins = _logit_bins(p)
            self.roc_counts[j, 0] += np.bincount(bins[~positive], minlength=ROC_BINS)
            self.roc_counts[j, 1] += np.bincount(bins[positive], minlength=ROC_BINS)
            cal = np.minimum((p * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
            self.calibration_rows[j] += np.bincount(cal, minlength=CALIBRATION_BINS)
            self.calibration_positives[j] += np.bincount(
                cal, weights=positive, minlength=CALIBRATION_BINS
            )
            self.calibration_sums[j] += np.bincount(cal, weights=p, minlength=CALIBRATION_BINS)

    def roc(self, j: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Curve ``j``'s ``(false positive rate, true positive rate)``; None without both kinds."""
        negatives, positives = self.roc_counts[j]
        fp = np.concatenate([[0], np.cumsum(negatives[::-1])])
        tp = np.concatenate([[0], np.cumsum(positives[::-1])])
        if fp[-1] == 0 or tp[-1] == 0:
            return None
        return fp / fp[-1], tp / tp[-1]

    def calibration(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Curve ``j``'s ``(mean predicted probability, fraction positive)`` in non-empty bins."""
        rows = self.calibration_rows[j]
        kept = rows > 0
        return (
            self.calibration_sums[j][kept] / rows[kept],
            self.calibration_positives[j][kept] / rows[kept],
        )

    def label(self, j: int) -> str:
        """The legend of curve ``j``: its class."""
        return f"class {self.classes[self.columns[j]]}"

    def figure(self, title: str) -> Any:
        """The ROC curves (left) and the calibration curves (right), titled ``title``."""
        fig = new_figure("--plot", figsize=(11.0, 4.8))
        roc_ax, cal_ax = fig.subplots(1, 2)
        for j in range(len(self.columns)):
            curve = self.roc(j)
            if curve is not None:
                fpr, tpr = curve
                area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
                roc_ax.plot(fpr, tpr, label=f"{self.label(j)} (AUC {area:.3f})")
            mean, fraction = self.calibration(j)
            cal_ax.plot(mean, fraction, "o-", markersize=4, label=self.label(j))
        for ax, xlabel, ylabel, name in (
            (roc_ax, "false positive rate", "true positive rate", "ROC"),
            (cal_ax, "mean predicted probability", "fraction positive", "calibration"),
        ):
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=xlabel, ylabel=ylabel, title=name)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(title)
        fig.tight_layout()
        return fig


def _logit_bins(p: np.ndarray) -> np.ndarray:
    """The ROC bin of each probability: equal bins of its logit, clipped to the range."""
    with np.errstate(divide="ignore"):  # p = 0 or 1: an infinite logit, clipped
        logit = np.clip(np.log(p) - np.log1p(-p), -LOGIT_RANGE, LOGIT_RANGE)
    bins = ((logit + LOGIT_RANGE) * (ROC_BINS / (2 * LOGIT_RANGE))).astype(np.int64)
    return np.minimum(bins, ROC_BINS - 1)
