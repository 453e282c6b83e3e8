"""The ``gpulogreg`` command line: fit, predict, evaluate, bench, info, demo.

Examples
--------
::

    gpulogreg fit train.parquet --target label --model model.glr
    gpulogreg predict --model model.glr test.csv --output pred.csv --proba --id row_id
    gpulogreg evaluate --model model.glr test.csv --target label --json
    gpulogreg bench --rows 2000 --cols 10 --repeat 3
    gpulogreg demo
    cat test.csv | gpulogreg predict --model model.glr - --output - --proba | head

Memory: ``fit`` reads its data whole when they fit the memory budget
(``--memory-budget SIZE``, default half the available memory) and otherwise
trains on a :class:`gpulogreg.Dataset` that streams the file chunk by chunk
(``--chunk-rows N`` forces it); ``predict`` and ``evaluate`` always read chunk
by chunk. See :mod:`gpulogreg._cli_stream`. Pipes: a data argument ``-`` is
standard input (CSV, or svmlight with ``--format svmlight``; ``fit`` reads it
whole), ``predict --output -`` writes to standard output (CSV, or
``--output-format tsv|jsonl|parquet``). Data go to stdout, every message and
summary of a command writing data there to stderr; a reader that stops early
(``| head``) ends the command quietly.

Errors are one line on stderr, ``gpulogreg: error: ...``, with exit status 2
for usage and input errors (bad options, invalid estimator parameters,
missing files or columns, non-numeric or missing values, refused model
files: a :class:`gpulogreg.InputError`, or a missing file) and 1 for every
other failure (a ``ValueError`` from inside the library, NumPy's
``LinAlgError``, no usable GPU for ``--device gpu``: retrying elsewhere may
help, changing the command does not); ``--debug`` adds the traceback.
Every output file (model, predictions, JSON, plot) is checked before any
data is read (its directory exists and is writable, it is not a directory, a
FIFO or a device, predictions have a known extension) and written
atomically: a failed command leaves no partial file and an existing file
untouched; a symbolic link is written through to its target. Warnings (e.g.
a solver that hit ``--max-iter``) are one line each, ``gpulogreg: warning: ...``.

``fit --log-json FILE`` (and ``demo``'s) writes the fit's progress as JSON lines
while it runs (see :mod:`gpulogreg._jsonlines`); ``-`` is standard error.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import numpy as np

from gpulogreg._errors import InputError
from gpulogreg._jsonlines import JsonLinesLog
from gpulogreg._jsonlines import jsonable as _jsonable
from gpulogreg._version import __version__
from gpulogreg.io import STDIO

__all__ = ["main"]

PROG = "gpulogreg"
#: ``fit --index-base`` -> the ``zero_based`` argument of the svmlight reader.
_ZERO_BASED: dict[str, bool | str] = {"auto": "auto", "0": True, "1": False}
#: What a data argument may name.
_DATA_HELP = (
    "a .csv or .tsv file (also .gz, .bz2), a .parquet file, a directory of Parquet files "
    "(hive partitions key=value/ are columns) or a quoted glob such as 'data/*.parquet', "
    ".npy, .npz (arrays, or a scipy.sparse.save_npz matrix) or svmlight (.svm, .libsvm, .txt, "
    "also .gz, .bz2: read as sparse CSR); '-' reads CSV (or --format svmlight) "
    "from stdin"
)
#: Names ``--delimiter`` accepts for characters that are awkward to type.
_DELIMITER_NAMES = {"\\t": "\t", "tab": "\t"}


# --------------------------------------------------------------------------- errors
class UsageError(InputError):
    """Bad command-line usage (exit status 2)."""


#: Exceptions that mean "your input is wrong": exit status 2. Everything else,
#: ValueError and TypeError included (NumPy's LinAlgError is a ValueError),
#: is a failure: exit status 1.
_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (raised, so ``main`` decides the exit)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename and exc.strerror:
        return f"no such file: {exc.filename}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    text = " ".join(str(message).split())
    print(f"{PROG}: warning: {text}", file=sys.stderr)


# --------------------------------------------------------------------------- helpers
def _write_json_stdout(payload: dict[str, Any]) -> None:
    _write_json(payload, sys.stdout)


def _write_json(payload: dict[str, Any], stream: Any) -> None:
    print(
        json.dumps(_jsonable(payload), indent=None, sort_keys=False, allow_nan=False), file=stream
    )


def _parse_class_weight(text: str | None) -> Any:
    """``balanced``, ``none`` or ``label:weight,label:weight``."""
    if text is None or text.lower() == "none":
        return None
    if text == "balanced":
        return "balanced"
    weights: dict[Any, float] = {}
    for item in text.split(","):
        label, sep, weight = item.rpartition(":")
        if not sep or not label:
            raise UsageError(
                f"--class-weight must be 'balanced', 'none' or 'label:weight,...', got {text!r}"
            )
        try:
            weights[_parse_label(label.strip())] = float(weight)
        except ValueError:
            raise UsageError(f"--class-weight: weight {weight!r} is not a number") from None
    return weights


def _parse_label(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _delimiter(text: str) -> str:
    """``--delimiter``: one character, or ``\\t`` or ``tab`` for a tab."""
    value = _DELIMITER_NAMES.get(text, text)
    if len(value) != 1 or value in '"\r\n':
        raise argparse.ArgumentTypeError(
            f"expected one character other than a quote or a newline (or 'tab'), got {text!r}"
        )
    return value


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any data is read or a model trained, an output the command cannot write.

    ``args.outputs`` maps the command's output options to a check of the
    file's format (or None), called with the path and ``args``: every path
    given must be writable (:func:`gpulogreg._files.check_destination`), pass
    its check, and not be one of the command's input files (``args.inputs``,
    the attributes naming them), which the output would replace. ``-`` is
    standard output for the options in ``args.stdout_outputs`` (only its
    format is checked) and refused for the others.
    """
    from gpulogreg._files import check_destination

    inputs = [getattr(args, name, None) for name in getattr(args, "inputs", ())]
    for option, check_format in getattr(args, "outputs", {}).items():
        path = getattr(args, option.lstrip("-").replace("-", "_"))
        if path is None:
            continue
        to_stdout = path == STDIO
        if to_stdout and option not in getattr(args, "stdout_outputs", ()):
            raise UsageError(f"{option}: '-' (standard output) is not accepted here; name a file")
        try:
            if not to_stdout:
                check_destination(path)
            if check_format is not None:
                check_format(path, args)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{option}: {_one_line(exc)}") from None
        source = next((i for i in inputs if i not in (None, STDIO) and _same_file(i, path)), None)
        if source is not None:
            raise UsageError(f"{option}: {path} is an input of this command ({source})")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them does not exist (yet)
        return False


def _prediction_format(path: str, args: argparse.Namespace) -> None:
    """Refuse predictions whose extension (or ``--output-format``) names no format we write."""
    from gpulogreg.io import output_format

    output_format(path, args.output_format)


def _budget(args: argparse.Namespace) -> int:
    """Bytes the command's data may take: ``--memory-budget``, else the default fraction of RAM."""
    from gpulogreg._cli_stream import default_budget

    return args.memory_budget or default_budget()


def _chunk_rows(args: argparse.Namespace, n_features: int, fmt: str) -> int:
    """Rows per chunk of a streamed read: ``--chunk-rows``, else sized to the budget.

    A row of a sparse file (svmlight, a ``save_npz`` archive) is sized by its
    stored values, not by ``n_features``.
    """
    from gpulogreg._cli_stream import rows_per_chunk, scoring_row_bytes

    if args.chunk_rows is not None:
        return int(args.chunk_rows)
    # The data's dtype is known only once read: take --dtype's, else float64, the widest.
    itemsize = np.dtype(args.dtype or np.float64).itemsize
    row_bytes = scoring_row_bytes(args.data, fmt, itemsize)
    if row_bytes is None:
        row_bytes = n_features * itemsize
    return rows_per_chunk(row_bytes, _budget(args))


def _progress_wanted(args: argparse.Namespace) -> bool:
    """Progress on stderr: never with --quiet, else as --progress / --no-progress say, else
    when stderr is a terminal."""
    if args.quiet:
        return False
    if args.progress is not None:
        return bool(args.progress)
    # A JSON log on stderr and the bar would share its lines.
    return sys.stderr.isatty() and getattr(args, "log_json", None) != "-"


# --------------------------------------------------------------------------- progress log
Command = Callable[[argparse.Namespace], int]


def _with_progress_log(command: Command) -> Command:
    """``command`` with its ``--log-json`` open as ``args.log`` (None without the option).

    The log is opened before any data is read and closed when the command
    ends; a command that fails ends it with an ``error`` record.
    """

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        destination = getattr(args, "log_json", None)
        if destination is None:
            args.log = None
            return command(args)
        _check_log_destination(args, destination)
        with JsonLinesLog.open(destination) as log:
            args.log = log
            return command(args)

    return run


def _check_log_destination(args: argparse.Namespace, destination: str) -> None:
    """Refuse a ``--log-json`` file that is one of the command's inputs (it would be replaced)."""
    for name in getattr(args, "inputs", ()):
        source = getattr(args, name, None)
        if destination != "-" and source is not None and _same_file(source, destination):
            raise UsageError(f"--log-json: {destination} is an input of this command ({source})")


def _log_start(args: argparse.Namespace, model: Any, *, rows: int, features: int) -> None:
    """The log's start record: the command, its data and the estimator's parameters."""
    if args.log is not None:
        parameters = model.get_params(deep=False)
        del parameters["callback"]  # the log itself
        args.log.start(
            command=args.command,
            data=getattr(args, "data", None),
            rows=rows,
            features=features,
            solver=model.solver,
            parameters=parameters,
        )


def _log_end(args: argparse.Namespace, model: Any, seconds: float) -> None:
    """The log's final record: how the fit ended, its time, the model file written."""
    if args.log is not None:
        args.log.end(**_model_summary(model), seconds=seconds, model=getattr(args, "model", None))


# --------------------------------------------------------------------------- fit
def _estimator_params(args: argparse.Namespace, progress: bool) -> dict[str, Any]:
    params: dict[str, Any] = {
        "C": args.C,
        "solver": args.solver,
        "tol": args.tol,
        "max_iter": args.max_iter,
        "class_weight": _parse_class_weight(args.class_weight),
        "fit_intercept": not args.no_intercept,
        "device": args.device,
        "backend": args.backend,
        "dtype": args.dtype,
        "verbose": 1 if progress else 0,
        "callback": args.log,
    }
    params.update(_penalty_params(args.penalty, args.l1_ratio))
    if args.random_state is not None:
        params["random_state"] = args.random_state
    if args.batch_size is not None:
        params["batch_size"] = args.batch_size
    return params


def _penalty_params(penalty: str | None, l1_ratio: float | None) -> dict[str, Any]:
    """``--penalty`` and ``--l1-ratio`` as the estimator's ``l1_ratio`` and ``C``.

    The estimator's ``penalty`` is deprecated (as scikit-learn's): ``l1_ratio``
    and ``C`` say it all. ``--penalty`` stays as a plain name for them.
    """
    if penalty is None:
        return {} if l1_ratio is None else {"l1_ratio": l1_ratio}
    if penalty == "elasticnet":
        if l1_ratio is None:
            raise UsageError("--penalty elasticnet needs --l1-ratio (the L1 share, in [0, 1])")
        return {"l1_ratio": l1_ratio}
    implied = {"l2": 0.0, "l1": 1.0, "none": 0.0}[penalty]
    if l1_ratio is not None and l1_ratio != implied:
        raise UsageError(
            f"--penalty {penalty} takes no --l1-ratio {l1_ratio:g}: use --penalty elasticnet "
            "(or --l1-ratio alone)"
        )
    return {"C": math.inf} if penalty == "none" else {"l1_ratio": implied}


def _model_summary(model: Any) -> dict[str, Any]:
    n_iter = getattr(model, "n_iter_", None)
    return {
        "classes": np.asarray(model.classes_).tolist(),
        "solver": getattr(model, "solver_", None),
        "backend": getattr(model, "backend_", None),
        "device": getattr(model, "device_", None),
        "iterations": int(np.sum(n_iter)) if n_iter is not None else None,
        "objective": getattr(model, "objective_", None),
        "converged": getattr(model, "converged_", None),
    }


def _training_data(args: argparse.Namespace, fmt: str) -> Any:
    """The training data of ``fit`` and ``cv``: whole within the memory budget, else streamed."""
    from gpulogreg._cli_stream import load_training_data

    return load_training_data(
        args.data,
        fmt,
        budget=_budget(args),
        chunk_rows=args.chunk_rows,
        read={
            "format": fmt,
            "dtype": args.dtype,
            "target": args.target,
            "features": args.features,
            "id_column": args.id,
            "weight_column": args.weight,
            "zero_based": _ZERO_BASED[args.index_base],
            "delimiter": args.delimiter,
        },
    )


@_with_progress_log
def cmd_fit(args: argparse.Namespace) -> int:
    from gpulogreg.estimator import LogisticRegression
    from gpulogreg.persistence import save_model

    fmt = _format_of(args)
    if args.target is None and fmt in ("csv", "parquet"):
        raise UsageError(f"fit needs --target COL: the label column of the {fmt} file")
    if args.target is None and fmt == "npy":
        raise UsageError(f"{args.data}: no labels; name the target column with --target")
    _check_summary_options(args)
    progress = _progress_wanted(args)
    params = _estimator_params(args, progress)
    model = LogisticRegression(**params)  # validates nothing yet: fit does
    start = time.perf_counter()
    data = _training_data(args, fmt)
    read_s = time.perf_counter() - start  # streamed: the validating pass
    if data.note and not args.quiet:
        print(f"{PROG}: {data.note}", file=sys.stderr)
    if data.table is not None and data.table.y is None:
        raise UsageError(f"{args.data}: no labels; name the target column with --target")
    _log_start(args, model, rows=data.n_rows, features=int(data.n_features))
    start = time.perf_counter()
    X, y, sample_weight = data.fit_args()
    model.fit(X, y, sample_weight=sample_weight)
    fit_s = time.perf_counter() - start
    extra = {
        "features": data.feature_names or None,  # svmlight columns are indices, unnamed
        "target": args.target,
        "weight": args.weight,
        "data_format": fmt,
        "reading_options": data.reading_options,
        "trained_rows": data.n_rows,
    }
    save_model(model, args.model, metadata=extra)
    _log_end(args, model, fit_s)
    cov_type = args.cov_type or "nonrobust"
    inference = _inference_table(model, data, cov_type) if args.summary else None
    summary = {
        "command": "fit",
        "model": args.model,
        "rows": data.n_rows,
        "features": int(data.n_features),
        "dtype": str(data.dtype),
        "streamed": data.streamed,
        "chunk_rows": data.chunk_rows,
        **_model_summary(model),
        "read_seconds": read_s,
        "seconds": fit_s,
    }
    if inference is not None:
        summary["coefficients"] = inference[1]
    if args.json:
        _write_json_stdout(summary)
    else:
        if inference is not None:
            print(inference[0])
        state = "converged" if summary["converged"] else "NOT converged"
        read = f"read {read_s:.3f} s"
        if data.streamed:
            read = f"streamed in chunks of {data.chunk_rows:,} rows, validated in {read_s:.3f} s"
        print(
            f"fitted {summary['rows']:,} rows x {summary['features']} features in "
            f"{fit_s:.3f} s ({read}): {summary['solver']} on "
            f"{summary['device']}/{summary['backend']}, {summary['iterations']} iterations, "
            f"objective {summary['objective']:.10g}, {state}"
        )
        print(f"model written to {args.model}")
    return 0


# --------------------------------------------------------------------------- cv
def _grid(text: str, name: str, *, integer_count: bool) -> Any:
    """``--Cs 10`` (a count: scikit-learn's log grid) or ``--Cs 0.1,1,10`` (the values)."""
    try:
        if integer_count and "," not in text and text.strip().isdigit():
            return int(text)
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{name} takes a count or comma-separated numbers, got {text!r}") from None


def _score_table(model: Any) -> list[dict[str, Any]]:
    """One row per grid point: C, l1_ratio, the folds' scores, their mean and spread."""
    rows = []
    scores = np.asarray(model.scores_)  # (folds, l1_ratios, Cs)
    for li, l1_ratio in enumerate(model.l1_ratios_):
        for c, C in enumerate(model.Cs_):
            folds = scores[:, li, c]
            rows.append(
                {
                    "C": float(C),
                    "l1_ratio": float(l1_ratio),
                    "mean": float(folds.mean()),
                    "std": float(folds.std()),
                    "folds": folds.tolist(),
                    "best": bool(float(C) == model.C_ and float(l1_ratio) == model.l1_ratio_),
                }
            )
    return rows


def cmd_cv(args: argparse.Namespace) -> int:
    from gpulogreg.model_selection import LogisticRegressionCV
    from gpulogreg.persistence import save_model

    fmt = _format_of(args)
    if args.target is None and fmt in ("csv", "parquet", "npy"):
        raise UsageError(f"cv needs --target COL: the label column of the {fmt} file")
    params = _estimator_params(args, False)
    for name in ("C", "callback", "batch_size", "random_state"):
        params.pop(name, None)
    l1_ratio = params.pop("l1_ratio", None)
    l1_ratios = _grid(args.l1_ratios, "--l1-ratios", integer_count=False)
    if l1_ratio is not None and args.l1_ratios == "0":
        l1_ratios = [l1_ratio]
    model = LogisticRegressionCV(
        **params,
        Cs=_grid(args.Cs, "--Cs", integer_count=True),
        l1_ratios=l1_ratios,
        cv=args.cv,
        scoring=args.scoring,
        refit=True,
    )
    start = time.perf_counter()
    data = _training_data(args, fmt)
    read_s = time.perf_counter() - start
    if data.note and not args.quiet:
        print(f"{PROG}: {data.note}", file=sys.stderr)
    if data.table is not None and data.table.y is None:
        raise UsageError(f"{args.data}: no labels; name the target column with --target")
    start = time.perf_counter()
    X, y, sample_weight = data.fit_args()
    model.fit(X, y, sample_weight=sample_weight)
    fit_s = time.perf_counter() - start
    extra = {
        "features": data.feature_names or None,
        "target": args.target,
        "weight": args.weight,
        "data_format": fmt,
        "reading_options": data.reading_options,
        "trained_rows": data.n_rows,
        "cv": {"folds": args.cv, "scoring": args.scoring, "Cs": model.Cs_.tolist()},
    }
    save_model(model, args.model, metadata=extra)
    table = _score_table(model)
    summary = {
        "command": "cv",
        "model": args.model,
        "rows": data.n_rows,
        "features": int(data.n_features),
        "streamed": data.streamed,
        "folds": args.cv,
        "scoring": args.scoring,
        "C": model.C_,
        "l1_ratio": model.l1_ratio_,
        "scores": table,
        "passes": model.n_cv_passes_,
        **_model_summary(model),
        "read_seconds": read_s,
        "seconds": fit_s,
    }
    if args.json:
        _write_json_stdout(summary)
        return 0
    print(f"{'C':>12} {'l1_ratio':>8} {args.scoring + ' (mean)':>22} {'std':>10}")
    for row in table:
        mark = "  <- best" if row["best"] else ""
        print(
            f"{row['C']:>12.6g} {row['l1_ratio']:>8.3g} {row['mean']:>22.6f} "
            f"{row['std']:>10.2e}{mark}"
        )
    print(
        f"{args.cv}-fold cross-validation of {len(table)} grid points on {data.n_rows:,} rows "
        f"x {data.n_features} features in {fit_s:.3f} s ({model.n_cv_passes_} passes over the "
        f"data, all folds together); refitted with C={model.C_:.6g}"
    )
    print(f"model written to {args.model}")
    return 0


def _check_summary_options(args: argparse.Namespace) -> None:
    """Refuse, before any work, a --summary that inference would refuse after the training."""
    if args.cov_type is not None and not args.summary:
        raise UsageError("--cov-type is the covariance of the --summary table: add --summary")
    if not args.summary:
        return
    mapped = _penalty_params(args.penalty, args.l1_ratio)
    if mapped.get("l1_ratio", 0.0) > 0 and "C" not in mapped:
        raise UsageError(
            "--summary needs an L2 penalty or none: a fit with an L1 term has no "
            "Hessian-based covariance"
        )
    if args.class_weight not in (None, "none"):
        raise UsageError(
            "--summary is not available with --class-weight: class weights are importance "
            "weights, under which the coefficient table is not valid"
        )


def _inference_table(model: Any, data: Any, cov_type: str) -> tuple[str, list[dict[str, Any]]]:
    """The fitted model's summary text and its coefficient table (one record per parameter).

    The model was fitted on the file's data (``data``, a
    :class:`gpulogreg._cli_stream.TrainingData`: its arrays, or its Dataset, read
    once more): its parameters (and the warnings about them) are named by the
    file's columns.
    """
    from gpulogreg._inference import run_inference

    fitted = model._previous()
    names = data.feature_names  # none for svmlight columns: the parameters are x0, x1, ...
    fitted.feature_names = np.asarray(names, dtype=object) if names else None
    X, y, sample_weight = data.fit_args()  # the fit's frequency weights, as it had them
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        results = run_inference(
            X,
            y,
            sample_weight,
            spec=model._spec(),
            fitted=fitted,
            cov_type=cov_type,
            groups=None,
        )
    results = results if isinstance(results, list) else [results]
    text = "\n\n".join(r.summary() for r in results)
    names = ("coef", "std_err", "z", "p_value", "ci_lower", "ci_upper")
    records = []
    for result in results:
        columns = list(result.coefficient_table().values())
        contrasts = [None] if result.params.ndim == 1 else result.classes[1:].tolist()
        for j, contrast in enumerate(contrasts):
            for i, name in enumerate(result.param_names):
                values = [float(c[i] if c.ndim == 1 else c[i, j]) for c in columns]
                record: dict[str, Any] = {"parameter": name}
                if result.positive_class is not None:
                    record["class"] = _jsonable(result.positive_class)
                if contrast is not None:
                    record["class"] = _jsonable(contrast)
                    record["reference"] = _jsonable(result.classes[0])
                record.update(zip(names, values, strict=True))
                records.append(record)
    return text, records


def _format_of(args: argparse.Namespace) -> str:
    from gpulogreg.io import detect_format

    return detect_format(args.data, args.format)


# --------------------------------------------------------------------------- predict / evaluate
def _load_model(path: str) -> tuple[Any, dict[str, Any]]:
    from gpulogreg.persistence import load_with_metadata

    return load_with_metadata(path)


def _feature_columns(
    args: argparse.Namespace, model: Any, meta: dict[str, Any], fmt: str
) -> tuple[Any, dict[str, Any]]:
    """Feature selection and reader options for data scored by a loaded model.

    A file of the training data's format is read with the options its reading
    settled (svmlight: zero- or one-based indices), stored in the model file.
    """
    extra = meta.get("extra") or {}
    options: dict[str, Any] = {}
    if fmt == extra.get("data_format"):
        options.update(extra.get("reading_options") or {})
    if fmt == "svmlight" and args.features is None:
        # The model's width is the file's (with --features, the file is wider).
        options["n_features"] = int(model.n_features_in_)
    named = fmt in ("csv", "parquet")
    names = extra.get("features") if extra.get("data_format") in ("csv", "parquet") else None
    if names is None and getattr(model, "feature_names_in_", None) is not None:
        names = [str(n) for n in model.feature_names_in_]
    if args.features is None:
        return (names if named else None), options
    if not named or names is None:
        return args.features, options
    # Columns are matched by name, never by position: the model's own order.
    from gpulogreg.io import _parse_features

    requested = [str(c) for c in _parse_features(args.features) or []]
    if sorted(requested) != sorted(names):
        unseen = sorted(set(requested) - set(names))
        missing = sorted(set(names) - set(requested))
        raise UsageError(
            f"--features {','.join(requested)} are not the model's features "
            f"({','.join(names)}): unseen {unseen or 'none'}, missing {missing or 'none'}"
        )
    return names, options


def _scored_batches(
    args: argparse.Namespace,
    model: Any,
    meta: dict[str, Any],
    *,
    target: Any,
    id_column: Any,
    weight_column: Any = None,
) -> Iterator[Any]:
    """The data scored by a loaded model, chunk by chunk (:func:`gpulogreg.io.iter_batches`).

    Chunks hold ``--chunk-rows`` rows, or as many as the memory budget allows
    (:func:`_chunk_rows`); svmlight files and ``save_npz`` archives stream as CSR
    chunks, dense ``.npz`` files are read whole and sliced.
    """
    from gpulogreg.io import DataError, detect_format, iter_batches

    fmt = detect_format(args.data, args.format)
    features, options = _feature_columns(args, model, meta, fmt)
    n_rows = 0
    for table in iter_batches(
        args.data,
        format=args.format,
        dtype=args.dtype,
        target=target,
        features=features,
        id_column=id_column,
        weight_column=weight_column,
        delimiter=args.delimiter,
        chunk_rows=_chunk_rows(args, int(model.n_features_in_), fmt),
        **options,
    ):
        if table.X.shape[1] != model.n_features_in_:
            raise DataError(
                f"{args.data}: {table.X.shape[1]} feature columns, but the model was fitted "
                f"with {model.n_features_in_} (select them with --features)"
            )
        n_rows += table.n_rows
        yield table
    if n_rows == 0:
        raise DataError(f"{args.data}: the file has no rows")


def _predictions(
    model: Any, X: np.ndarray, *, proba: bool = True
) -> tuple[np.ndarray | None, np.ndarray]:
    """``(probabilities or None, labels)`` of rows whose columns the model's names selected.

    The array has no column names, but :func:`_feature_columns` picked its
    columns by the names stored in the model, in the model's order, so the
    estimator's "no valid feature names" warning does not apply here.
    """
    from gpulogreg._predict import labels, probabilities

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        scores = model.decision_function(X)  # once: the probabilities and labels share it
    ovr = model.multi_class == "ovr"
    proba_out = np.asarray(probabilities(scores, ovr=ovr)) if proba else None
    return proba_out, np.asarray(labels(scores, model.classes_))


def _proba_column_names(classes: np.ndarray) -> list[str]:
    return [f"proba_{c}" for c in np.asarray(classes).tolist()]


def _prediction_columns(args: argparse.Namespace, model: Any, table: Any) -> dict[str, Any]:
    """The output columns of one chunk: the id, ``prediction``, ``proba_<class>`` (--proba)."""
    columns: dict[str, Any] = {}
    if args.id is not None:
        columns[str(args.id)] = table.ids
    proba, predicted = _predictions(model, table.X, proba=args.proba)
    if predicted.dtype.kind == "O":
        predicted = predicted.astype(str)
    columns["prediction"] = predicted
    if proba is not None:
        for j, name in enumerate(_proba_column_names(model.classes_)):
            columns[name] = proba[:, j]
    return columns


def cmd_predict(args: argparse.Namespace) -> int:
    """Score the data chunk by chunk, writing each chunk's predictions as it comes.

    A file is written atomically (a temporary file renamed at the end: a
    failure in any chunk leaves the old output); ``--output -`` writes to
    standard output, and the command's own summary goes to stderr.
    """
    from gpulogreg.io import open_predictions

    model, meta = _load_model(args.model)
    start = time.perf_counter()
    columns: list[str] = []
    with open_predictions(args.output, args.output_format) as writer:
        for table in _scored_batches(args, model, meta, target=None, id_column=args.id):
            chunk = _prediction_columns(args, model, table)
            writer.write(chunk)
            columns = list(chunk)
    seconds = time.perf_counter() - start
    summary = {
        "command": "predict",
        "model": args.model,
        "output": args.output,
        "rows": writer.rows,
        "columns": columns,
        "seconds": seconds,
    }
    report = sys.stderr if args.output == STDIO else sys.stdout
    if args.json:
        _write_json(summary, report)
    elif not (args.quiet and report is sys.stderr):
        where = "standard output" if args.output == STDIO else args.output
        print(f"wrote {writer.rows:,} predictions to {where} in {seconds:.3f} s", file=report)
    return 0


def evaluate_predictions(
    y: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    predicted: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Log loss, accuracy, ROC AUC and confusion counts of a fitted model's outputs.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        True labels, all among ``classes``.
    proba : ndarray of shape (n_samples, n_classes)
        ``predict_proba`` output, columns in ``classes`` order.
    classes : ndarray of shape (n_classes,)
    predicted : ndarray of shape (n_samples,)
        ``predict`` output.
    sample_weight : ndarray of shape (n_samples,), optional
        Weights of the rows: every metric is then weighted as scikit-learn's
        ``sample_weight`` weights it (a row of weight 2 counts as two rows).

    Returns
    -------
    dict
        ``rows``, ``weight_sum`` (the rows when unweighted), ``log_loss``
        (natural log, probabilities clipped to [eps, 1 - eps] as in
        ``sklearn.metrics.log_loss``), ``accuracy``, ``roc_auc`` (binary: of
        the second class's probability; multiclass: one-vs-rest macro
        average; None when a class is absent), ``confusion`` (rows: true,
        columns: predicted, in ``classes`` order; sums of weights when
        weighted).
    """
    from gpulogreg._cli_stream import MetricsAccumulator

    metrics = MetricsAccumulator(classes)
    metrics.add(y, proba, predicted, sample_weight)
    return metrics.result()


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Metrics of the model on labelled data, read chunk by chunk (one pass, bounded memory)."""
    from gpulogreg._cli_stream import MetricsAccumulator

    model, meta = _load_model(args.model)
    target = args.target
    if target is None:
        target = (meta.get("extra") or {}).get("target")
    fmt = _format_of(args)
    if target is None and fmt in ("csv", "parquet"):
        raise UsageError("evaluate needs --target COL (the model file does not record it)")
    accumulator = MetricsAccumulator(model.classes_)
    curves = _evaluation_curves(model.classes_) if args.plot is not None else None
    batches = _scored_batches(
        args, model, meta, target=target, id_column=args.id, weight_column=args.weight
    )
    for table in batches:
        if table.y is None:
            raise UsageError(f"{args.data}: no target found; give --target")
        proba, predicted = _predictions(model, table.X)
        assert proba is not None
        y_index = accumulator.add(table.y, proba, predicted, table.weights)
        if curves is not None:
            curves.add(y_index, proba)
    metrics = accumulator.result()
    result = {"command": "evaluate", "model": args.model, "data": args.data, **metrics}
    if curves is not None:
        _save_evaluation_plot(args, curves)
        result["plot"] = args.plot
    if args.json:
        _write_json_stdout(result)
        return 0
    print(f"rows      {metrics['rows']:,}")
    print(f"log loss  {metrics['log_loss']:.6f}")
    print(f"accuracy  {metrics['accuracy']:.6f}")
    auc = metrics["roc_auc"]
    print(f"ROC AUC   {'n/a' if auc is None else format(auc, '.6f')}")
    if args.weight is not None:
        print(f"weighted  by {args.weight} (sum {metrics['weight_sum']:.6g})")
    labels = [str(c) for c in metrics["confusion"]["labels"]]
    width = max(8, *(len(s) + 2 for s in labels))
    print("confusion (rows: true, columns: predicted)")
    print(" " * width + "".join(s.rjust(width) for s in labels))
    for label, row in zip(labels, metrics["confusion"]["matrix"], strict=True):
        print(label.rjust(width) + "".join(str(v).rjust(width) for v in row))
    if args.plot is not None:
        print(f"ROC and calibration curves written to {args.plot}")
    return 0


def _evaluation_curves(classes: np.ndarray) -> Any:
    """``evaluate --plot``: the ROC and calibration curves, counted chunk by chunk."""
    from gpulogreg.plots import EvaluationCurves

    return EvaluationCurves(classes)


def _save_evaluation_plot(args: argparse.Namespace, curves: Any) -> None:
    """Draw the curves of ``evaluate --plot`` into its PNG file."""
    from gpulogreg.plots import save_png

    save_png(curves.figure(f"{args.model} on {args.data}"), args.plot)


def _plot_destination(path: str, args: argparse.Namespace) -> None:
    """Refuse ``--plot`` before any data is read when matplotlib is missing."""
    from gpulogreg._plot import require_matplotlib

    require_matplotlib("--plot")


# --------------------------------------------------------------------------- info / bench / demo
def cmd_info(args: argparse.Namespace) -> int:
    try:
        from gpulogreg.info import system_info
    except ImportError:
        info = _basic_info()
    else:
        info = system_info()
    if args.json:
        _write_json_stdout(info)
        return 0
    for key, value in _flatten(info):
        print(f"{key}: {value}")
    return 0


def _basic_info() -> dict[str, Any]:
    import platform

    versions: dict[str, Any] = {"gpulogreg": __version__, "numpy": np.__version__}
    for name in ("numba", "pyarrow", "cupy", "sklearn"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


def _flatten(info: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``a.b.c: value`` rows from nested dicts (and lists of dicts, indexed)."""
    if isinstance(info, dict):
        items: Any = info.items()
    elif isinstance(info, list) and info and all(isinstance(v, dict) for v in info):
        items = enumerate(info)
    else:
        return [(prefix.rstrip("."), info)]
    rows: list[tuple[str, Any]] = []
    for key, value in items:
        rows.extend(_flatten(value, f"{prefix}{key}."))
    return rows


def cmd_bench(args: argparse.Namespace) -> int:
    from gpulogreg.benchmark import run_from_args

    return run_from_args(args)


@_with_progress_log
def cmd_demo(args: argparse.Namespace) -> int:
    from gpulogreg.benchmark import make_problem
    from gpulogreg.estimator import LogisticRegression

    progress = _progress_wanted(args)
    start = time.perf_counter()
    X, y = make_problem(
        args.rows + args.test_rows,
        args.cols,
        dtype=args.dtype,
        conditioning=args.conditioning,
        seed=args.seed,
    )
    X_train, y_train = X[: args.rows], y[: args.rows]
    X_test, y_test = X[args.rows :], y[args.rows :]
    gen_s = time.perf_counter() - start
    if not args.json:
        print(
            f"gpulogreg demo: {args.rows:,} training rows x {args.cols} features, {args.dtype}, "
            f"{args.conditioning}-conditioned (generated in {gen_s:.2f} s)",
            flush=True,
        )
    model = LogisticRegression(
        C=args.C,
        solver=args.solver,
        tol=args.tol,
        device=args.device,
        verbose=1 if progress else 0,
        callback=args.log,
    )
    _log_start(args, model, rows=args.rows, features=args.cols)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    _log_end(args, model, fit_s)
    result: dict[str, Any] = {"command": "demo", "rows": args.rows, "cols": args.cols}
    result.update(_model_summary(model))
    result["seconds"] = fit_s
    for name, Xs, ys in (("train", X_train, y_train), ("test", X_test, y_test)):
        if len(ys) == 0:
            continue
        metrics = evaluate_predictions(
            ys, model.predict_proba(Xs), model.classes_, model.predict(Xs)
        )
        result[name] = {k: metrics[k] for k in ("rows", "log_loss", "accuracy", "roc_auc")}
    if args.json:
        _write_json_stdout(result)
        return 0
    state = "converged" if result["converged"] else "NOT converged"
    print(
        f"trained in {fit_s:.3f} s on {result['device']} ({result['backend']}, {result['solver']}, "
        f"{result['iterations']} iterations, {state})"
    )
    for name in ("train", "test"):
        if name in result:
            m = result[name]
            print(
                f"{name:5s} ({m['rows']:,} rows): log loss {m['log_loss']:.6f}, "
                f"accuracy {m['accuracy']:.4f}"
            )
    return 0


# --------------------------------------------------------------------------- parser
def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback on errors",
    )


def _add_data_options(p: argparse.ArgumentParser, *, target_required: bool) -> None:
    p.add_argument(
        "--target",
        required=target_required,
        help="target column (CSV/Parquet: name; .npy: column index or a .npy of labels; "
        ".npz: array name, default 'y', or a .npy of labels for a scipy.sparse.save_npz "
        "archive; svmlight: not needed)",
    )
    p.add_argument(
        "--features",
        help="comma-separated feature columns (default: all but target and id)",
    )
    p.add_argument("--id", help="an id column: never used as a feature")
    p.add_argument(
        "--weight",
        metavar="COLUMN",
        help="column of sample weights (CSV/Parquet: name; .npy: index; .npz: array name); "
        "never used as a feature",
    )
    _add_reading_options(p)


def _add_reading_options(p: argparse.ArgumentParser) -> None:
    from gpulogreg.io import FORMATS

    p.add_argument(
        "--format",
        choices=FORMATS,
        help="data format (default: from the extension; needed for names without one)",
    )
    p.add_argument(
        "--delimiter",
        type=_delimiter,
        help="CSV field separator, one character ('\\t' or 'tab' for a tab; default: a tab "
        "for .tsv names, else a comma)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help="dtype of X (default: float32 data stays float32, else float64)",
    )


def _memory_size(text: str) -> int:
    from gpulogreg._cli_stream import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_memory_options(p: argparse.ArgumentParser, *, fit: bool) -> None:
    when = (
        "read the data whole when they fit in SIZE, else stream them in chunks"
        if fit
        else "size the chunks the data are read in (this command always streams)"
    )
    p.add_argument(
        "--memory-budget",
        type=_memory_size,
        metavar="SIZE",
        help=f"memory the data may take, e.g. 500M or 2G (powers of 1024): {when}; "
        "default: half of the memory available",
    )
    p.add_argument(
        "--chunk-rows",
        type=_positive_int,
        metavar="N",
        help="read the data in chunks of N rows"
        + (" (forces streaming; dense .npz and stdin are read whole)" if fit else ""),
    )


def _add_solver_options(p: argparse.ArgumentParser) -> None:
    from gpulogreg.solvers import SOLVERS

    p.add_argument(
        "--solver",
        choices=("auto", *SOLVERS),
        default="auto",
        help="auto: gd with an L1 term, else lbfgs (default auto)",
    )
    p.add_argument(
        "-C",
        "--C",
        dest="C",
        type=_positive_float,
        default=1.0,
        help="inverse L2 strength (default 1)",
    )


def _add_output_options(p: argparse.ArgumentParser, json_help: str) -> None:
    """``--json``, ``--quiet`` and ``--progress`` / ``--no-progress``: the same on every command."""
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no messages on stderr except errors: no progress, no warnings",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show progress on stderr (default: when stderr is a terminal)",
    )
    group.add_argument(
        "--no-progress", dest="progress", action="store_false", help="show no progress"
    )


def _add_log_json(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-json",
        metavar="FILE",
        help="write the fit's progress to FILE as JSON lines while it runs ('-': stderr): "
        "a start record, one per iteration or epoch, a final record",
    )


def _add_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw the ROC and calibration curves to a PNG (needs matplotlib; multiclass: "
        "each class against the rest)",
    )


def _add_training_inputs(p: argparse.ArgumentParser, model_help: str) -> None:
    """The data, reading, memory and solver options of ``fit`` and ``cv``, and ``--model``."""
    p.add_argument("data", help=f"training data: {_DATA_HELP}")
    _add_data_options(p, target_required=False)
    _add_memory_options(p, fit=True)
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument(
        "--index-base",
        choices=tuple(_ZERO_BASED),
        default="auto",
        help="svmlight: feature indices start at 0 or 1 (default auto: 1 unless an index 0 "
        "occurs); the choice is stored in the model and used to read the files it scores",
    )
    _add_solver_options(p)


def _add_fit_settings(p: argparse.ArgumentParser) -> None:
    """The estimator settings ``fit`` and ``cv`` share."""
    p.add_argument(
        "--class-weight", help="'balanced', 'none' or 'label:weight,...' (default: none)"
    )
    p.add_argument("--max-iter", type=_positive_int, default=1000)
    p.add_argument("--tol", type=_positive_float, default=1e-6)
    p.add_argument("--no-intercept", action="store_true", help="fit without an intercept")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--backend", choices=("auto", "numba", "numpy", "cupy"), default="auto")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gpulogreg`` command."""
    from gpulogreg.io import OUTPUT_FORMATS

    parser = _Parser(
        prog=PROG,
        description="Fast logistic regression on the CPU (Numba) and the GPU (CUDA).",
        epilog="Run 'gpulogreg COMMAND --help' for the options of a command. Output files are "
        "checked before any data is read and written atomically; a symbolic link is written "
        "through to its target, a FIFO, socket or device (such as /dev/null) is refused.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # fit
    p = sub.add_parser("fit", help="train a model on a data file and save it")
    _add_training_inputs(p, "model file to write (written exactly there)")
    p.add_argument("--penalty", choices=("l2", "l1", "elasticnet", "none"), default=None)
    p.add_argument("--l1-ratio", type=float, default=None, help="elastic-net mixing in [0, 1]")
    _add_fit_settings(p)
    p.add_argument("--batch-size", type=_positive_int, help="mini-batch size (solver minibatch)")
    p.add_argument("--random-state", type=int, help="seed of the stochastic solvers")
    _add_output_options(p, "print a JSON summary on stdout")
    p.add_argument(
        "--summary",
        action="store_true",
        help="print the coefficient table (standard errors, z, p-values, intervals: one more "
        "pass over the data); with --json, add it as 'coefficients'",
    )
    p.add_argument(
        "--cov-type",
        choices=("nonrobust", "HC0", "HC1"),
        help="covariance of the --summary table (default nonrobust)",
    )
    _add_log_json(p)
    _add_common(p)
    p.set_defaults(func=cmd_fit, outputs={"--model": None}, inputs=("data", "target"))

    # cv
    p = sub.add_parser(
        "cv", help="choose C (and l1_ratio) by cross-validation, refit the best, save it"
    )
    _add_training_inputs(p, "model file to write (the refitted model, written exactly there)")
    p.add_argument(
        "--Cs",
        default="10",
        help="the C grid: a count (that many values log-spaced from 1e-4 to 1e4, "
        "scikit-learn's grid) or comma-separated values (default 10)",
    )
    p.add_argument(
        "--l1-ratios",
        default="0",
        help="comma-separated L1 shares to try (default 0: L2)",
    )
    p.add_argument(
        "--cv",
        type=_positive_int,
        default=5,
        help="number of folds (default 5): stratified in memory; data streamed over "
        "--memory-budget are dealt to the folds by a hash of the row index",
    )
    p.add_argument(
        "--scoring",
        choices=("neg_log_loss", "accuracy", "roc_auc"),
        default="neg_log_loss",
        help="held-out score to maximise (default neg_log_loss)",
    )
    p.add_argument("--penalty", choices=("l2", "l1", "elasticnet"), default=None)
    p.add_argument("--l1-ratio", type=float, default=None, help=argparse.SUPPRESS)
    _add_fit_settings(p)
    p.set_defaults(batch_size=None, random_state=None, log=None)
    _add_output_options(p, "print the score table and a summary as JSON on stdout")
    _add_common(p)
    p.set_defaults(func=cmd_cv, outputs={"--model": None}, inputs=("data", "target"))

    # predict
    p = sub.add_parser("predict", help="write predictions for a data file")
    p.add_argument("data", help=f"data to score: {_DATA_HELP}")
    p.add_argument("--model", required=True, help="model file")
    p.add_argument(
        "--output",
        "-o",
        required=True,
        help="output file: .csv, .tsv, .jsonl, .ndjson, .parquet or .pq; '-' writes to stdout "
        "(then the summary goes to stderr)",
    )
    p.add_argument(
        "--output-format",
        choices=OUTPUT_FORMATS,
        help="format of the output (default: from the extension; csv for '-')",
    )
    p.add_argument("--proba", action="store_true", help="add a proba_<class> column per class")
    p.add_argument("--id", help="column copied to the output (e.g. a row id)")
    p.add_argument(
        "--features", help="comma-separated feature columns (default: those of training)"
    )
    _add_reading_options(p)
    _add_memory_options(p, fit=False)
    _add_output_options(p, "print a JSON summary on stdout (stderr with --output -)")
    _add_common(p)
    p.set_defaults(
        func=cmd_predict,
        outputs={"--output": _prediction_format},
        stdout_outputs=("--output",),
        inputs=("data", "model"),
    )

    # evaluate
    p = sub.add_parser("evaluate", help="log loss, accuracy, ROC AUC, confusion counts")
    p.add_argument("data", help=f"labelled data: {_DATA_HELP}")
    p.add_argument("--model", required=True, help="model file")
    _add_data_options(p, target_required=False)
    _add_memory_options(p, fit=False)
    _add_output_options(p, "print the metrics as JSON on stdout")
    _add_plot(p)
    _add_common(p)
    p.set_defaults(
        func=cmd_evaluate, outputs={"--plot": _plot_destination}, inputs=("data", "model")
    )

    # bench
    from gpulogreg.benchmark import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="benchmark the backends and solvers on generated data")
    add_bench_arguments(p)
    _add_output_options(p, "print the records as JSON on stdout instead of the table")
    _add_common(p)
    p.set_defaults(func=cmd_bench, outputs={"--json-out": None, "--plot": None})

    # info
    p = sub.add_parser("info", help="versions, threads, BLAS, Numba, CuPy/CUDA and GPUs")
    _add_output_options(p, "print the facts as JSON on stdout")
    _add_common(p)
    p.set_defaults(func=cmd_info)

    # demo
    p = sub.add_parser("demo", help="train on a generated problem and report loss and time")
    p.add_argument("--rows", type=_positive_int, default=1_000_000, help="training rows")
    p.add_argument("--cols", type=_positive_int, default=100, help="features")
    p.add_argument("--test-rows", type=int, default=200_000, help="held-out rows")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--conditioning", choices=("well", "ill"), default="well")
    _add_solver_options(p)
    p.add_argument("--tol", type=_positive_float, default=1e-6)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    _add_output_options(p, "print the results as JSON on stdout")
    _add_log_json(p)
    _add_common(p)
    p.set_defaults(func=cmd_demo)
    return parser


# --------------------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    debug = bool(getattr(args, "debug", False))
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        if args.quiet:
            warnings.simplefilter("ignore")
        try:
            _check_outputs(args)
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # stdout closed early (e.g. piped into head): not an error of ours.
            _silence_stdout()
            return 1
        except Exception as exc:
            if debug:
                traceback.print_exc()
            print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
            return 2 if isinstance(exc, _INPUT_ERRORS) else 1


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
