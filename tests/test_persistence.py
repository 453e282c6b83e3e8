"""Model files: bit-identical round trips, and refusal of anything that is not ours."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import gpulogreg
from gpulogreg import LogisticRegression
from gpulogreg.persistence import FORMAT_VERSION, ModelFormatError, load_with_metadata, save_model
from tests._helpers import assert_same_fit, make_classification


def _touch(path: str) -> None:
    """The payload of the malicious files: creates ``path`` when unpickled."""
    Path(path).write_text("pwned")


class _Payload:
    """Unpickling this calls ``_touch(marker)``: code execution from a data file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_touch, (self.marker,))


def _object_array_npy(marker: Path) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(
        buf, np.array([_Payload(str(marker))], dtype=object), allow_pickle=True
    )
    return buf.getvalue()


@pytest.fixture(scope="module")
def binary_model() -> tuple[LogisticRegression, np.ndarray]:
    X, y = make_classification(400, 6, seed=3)
    labels = np.where(y == 1, "yes", "no")
    model = LogisticRegression(C=0.5, tol=1e-8, class_weight={"no": 1.0, "yes": 2.0})
    return model.fit(X, labels), X


def test_round_trip_is_bit_identical(tmp_path, binary_model):
    model, X = binary_model
    path = tmp_path / "model.bin"
    model.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]  # exactly that path
    loaded = gpulogreg.load(path)
    assert type(loaded) is LogisticRegression
    assert loaded.get_params() == model.get_params()
    for method in ("decision_function", "predict_proba", "predict_log_proba", "predict"):
        a, b = getattr(model, method)(X), getattr(loaded, method)(X)
        assert a.dtype == b.dtype
        assert a.tobytes() == b.tobytes(), method
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    assert loaded.n_iter_.tolist() == model.n_iter_.tolist()
    assert loaded.objective_ == model.objective_
    assert loaded.converged_ == model.converged_
    assert loaded.history_.objective == model.history_.objective


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0, 1, 2]),
        np.array([-1.0, 0.0, 7.0]),  # float labels (integral: scikit-learn refuses others)
        np.array(["a", "b", "c"]),
        np.array(["a", "b", "c"], dtype=object),
    ],
    ids=["int", "float", "str", "object-str"],
)
def test_multiclass_classes_of_every_kind(tmp_path, labels):
    X, y = make_classification(300, 4, n_classes=3, seed=5)
    model = LogisticRegression(C=np.inf, tol=1e-6).fit(X, labels[y])
    path = tmp_path / "m.glr"
    model.save(path)
    loaded = gpulogreg.load(path)
    assert loaded.classes_.dtype == model.classes_.dtype
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    assert np.isinf(loaded.C)
    assert model.predict_proba(X).tobytes() == loaded.predict_proba(X).tobytes()
    np.testing.assert_array_equal(model.predict(X), loaded.predict(X))


def _dates(unit: str) -> np.ndarray:
    return np.array(["2020-01-01", "2021-05-03", "2022-12-31"], dtype=f"datetime64[{unit}]")


@pytest.mark.parametrize(
    "labels",
    [
        _dates("D"),
        _dates("ns"),
        _dates("D").astype(">M8[D]"),  # not the machine's byte order
        np.array([1, 5, 30], dtype="timedelta64[s]"),
        np.array([1, 5, 30], dtype="timedelta64[10ms]"),  # a unit with a multiplier
        np.array([3, 1, 2], dtype=object),  # Python ints
        np.array([np.int64(3), np.int64(1), np.int64(2)], dtype=object),
        np.array([True, False, True], dtype=object),
    ],
    ids=[
        "date",
        "ns",
        "big-endian",
        "timedelta",
        "timedelta-10ms",
        "object-int",
        "object-np-int",
        "object-bool",
    ],
)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_labels_that_fit_are_saved_exactly(tmp_path, labels, n_classes):
    """fit -> save -> load -> predict gives the same labels, dtype and element types."""
    if len(set(labels.tolist())) < n_classes:
        pytest.skip("two distinct labels only")
    X, y = make_classification(300, 4, n_classes=n_classes, seed=5)
    model = LogisticRegression().fit(X, labels[y])
    model.save(tmp_path / "m.glr")
    loaded = gpulogreg.load(tmp_path / "m.glr")
    assert loaded.classes_.dtype == model.classes_.dtype
    assert loaded.classes_.tobytes() == model.classes_.tobytes() or (
        loaded.classes_.tolist() == model.classes_.tolist()
    )
    before, after = model.predict(X), loaded.predict(X)
    assert after.dtype == before.dtype
    np.testing.assert_array_equal(after, before)
    if not any(isinstance(v, np.generic) for v in labels.tolist()):  # else: Python scalars
        assert [type(v) for v in after.tolist()] == [type(v) for v in before.tolist()]


def test_datetime_labels_from_a_dataframe_column_are_saved_exactly(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = make_classification(300, 4, seed=5)
    when = pd.Series(
        pd.to_datetime(["2020-01-01T10:00", "2020-01-01T10:00:00.000001"], format="ISO8601")[y]
    )
    model = LogisticRegression().fit(X, when)
    model.save(tmp_path / "m.glr")
    loaded = gpulogreg.load(tmp_path / "m.glr")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.predict(X).dtype == when.to_numpy().dtype


def test_a_file_is_labelled_with_the_oldest_format_version_that_reads_it(tmp_path):
    """Datetime classes need version 2: a version-1 reader would take them for int64."""
    X, y = make_classification(100, 3, seed=5)
    LogisticRegression().fit(X, _dates("D")[y]).save(tmp_path / "d.glr")
    LogisticRegression().fit(X, y).save(tmp_path / "i.glr")
    assert load_with_metadata(tmp_path / "d.glr")[1]["format_version"] == FORMAT_VERSION == 2
    assert load_with_metadata(tmp_path / "i.glr")[1]["format_version"] == 1


@pytest.mark.parametrize("spec", ["<i8", "float64", "M8[bogus]", 7])
def test_a_datetime_array_of_a_bad_dtype_is_a_model_format_error(tmp_path, spec):
    X, y = make_classification(100, 3, seed=5)
    LogisticRegression().fit(X, _dates("D")[y]).save(tmp_path / "d.glr")
    _rewrite_metadata(
        tmp_path / "d.glr",
        tmp_path / "bad.glr",
        lambda m: m["datetime_arrays"].update(classes_=spec),
    )
    with pytest.raises(ModelFormatError, match="not a datetime"):
        gpulogreg.load(tmp_path / "bad.glr")


def test_feature_names_and_metadata(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = make_classification(200, 3, seed=1)
    df = pd.DataFrame(X, columns=["age", "height", "weight"])
    model = LogisticRegression().fit(df, y)
    save_model(model, tmp_path / "m.glr", metadata={"target": "sick", "n": 3})
    loaded, meta = load_with_metadata(tmp_path / "m.glr")
    assert list(loaded.feature_names_in_) == ["age", "height", "weight"]
    assert loaded.feature_names_in_.dtype == model.feature_names_in_.dtype
    assert meta["extra"] == {"target": "sick", "n": 3}
    assert meta["format_version"] == 1  # needs nothing newer: older gpulogreg reads it
    assert meta["library_version"] == gpulogreg.__version__
    assert meta["params"]["C"] == 1.0
    # The metadata is plain JSON that any zip tool can read.
    with zipfile.ZipFile(tmp_path / "m.glr") as zf:
        assert json.loads(zf.read("metadata.json"))["format"] == "gpulogreg-model"
    # ... and the archive is an npz that NumPy opens without pickle.
    with np.load(tmp_path / "m.glr", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["arrays/coef_"], model.coef_)


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        LogisticRegression().save(tmp_path / "m.glr")
    assert not (tmp_path / "m.glr").exists()


def test_unstorable_attribute_is_refused_and_nothing_written(tmp_path, binary_model):
    model, _ = binary_model
    model.extra_thing_ = np.array([object(), 1], dtype=object)
    try:
        with pytest.raises(TypeError, match="extra_thing_"):
            model.save(tmp_path / "m.glr")
    finally:
        del model.extra_thing_
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- refusals
def test_pickle_bearing_npz_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    bad = tmp_path / "evil.npz"
    np.savez(bad, coef_=np.array([_Payload(str(marker))], dtype=object))
    # Sanity: this file really runs code when loaded with pickle allowed.
    with np.load(bad, allow_pickle=True) as npz:
        npz["coef_"]
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ModelFormatError, match="not a gpulogreg model"):
        gpulogreg.load(bad)
    assert not marker.exists()


def test_model_file_with_an_object_array_is_refused_unread(tmp_path, binary_model):
    """Our own format with coef_ swapped for a pickled payload: refused, never unpickled."""
    model, _ = binary_model
    good = tmp_path / "good.glr"
    model.save(good)
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.glr"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "arrays/coef_.npy":
                data = _object_array_npy(marker)
            dst.writestr(name, data)
    with pytest.raises(ModelFormatError, match="Python objects"):
        gpulogreg.load(evil)
    assert not marker.exists()


def _rewrite_metadata(src: Path, dst: Path, edit) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "metadata.json":
                meta = json.loads(data)
                edit(meta)
                data = json.dumps(meta).encode()
            zout.writestr(name, data)


def test_newer_format_version_is_refused(tmp_path, binary_model):
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    _rewrite_metadata(
        tmp_path / "m.glr", tmp_path / "new.glr", lambda m: m.update(format_version=99)
    )
    with pytest.raises(ModelFormatError, match=r"format version 99.*upgrade"):
        gpulogreg.load(tmp_path / "new.glr")


def test_history_of_an_older_file_loads_its_optimality(tmp_path, binary_model):
    # Files written before the rename store the optimality under "grad_max_norm".
    model, _ = binary_model
    model.save(tmp_path / "m.glr")

    def rename(meta):  # type: ignore[no-untyped-def]
        series = meta["state"]["history_"]["__history__"]
        series["grad_max_norm"] = series.pop("optimality")

    _rewrite_metadata(tmp_path / "m.glr", tmp_path / "old.glr", rename)
    assert gpulogreg.load(tmp_path / "old.glr").history_.optimality == model.history_.optimality


def test_unknown_parameter_and_extra_member_are_refused(tmp_path, binary_model):
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    _rewrite_metadata(
        tmp_path / "m.glr", tmp_path / "p.glr", lambda m: m["params"].update(exec_me="x")
    )
    with pytest.raises(ModelFormatError, match="parameter 'exec_me' is unknown"):
        gpulogreg.load(tmp_path / "p.glr")
    with zipfile.ZipFile(tmp_path / "m.glr", "a") as zf:
        zf.writestr("payload.pkl", b"\x80\x04.")
    with pytest.raises(ModelFormatError, match=r"unexpected member 'payload\.pkl'"):
        gpulogreg.load(tmp_path / "m.glr")


@pytest.mark.parametrize("name", ["predict_proba", "C", "__class__", "plain"])
def test_state_may_not_shadow_methods_or_parameters(tmp_path, binary_model, name):
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    _rewrite_metadata(
        tmp_path / "m.glr", tmp_path / "s.glr", lambda m: m["state"].update({name: "x"})
    )
    with pytest.raises(ModelFormatError, match="bad attribute name"):
        gpulogreg.load(tmp_path / "s.glr")


def test_inconsistent_shapes_are_refused(tmp_path, binary_model):
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    _rewrite_metadata(
        tmp_path / "m.glr", tmp_path / "s.glr", lambda m: m["state"].update(n_features_in_=99)
    )
    with pytest.raises(ModelFormatError, match="n_features_in_"):
        gpulogreg.load(tmp_path / "s.glr")


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), b"", b"PK\x03\x04" + os.urandom(200), b'{"format": "gpulogreg-model"}'],
    ids=["random", "empty", "zip-magic-then-garbage", "json"],
)
def test_random_and_foreign_files_are_refused(tmp_path, content):
    path = tmp_path / "m.glr"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError):
        gpulogreg.load(path)


def test_truncated_model_file_is_refused(tmp_path, binary_model):
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    data = (tmp_path / "m.glr").read_bytes()
    (tmp_path / "cut.glr").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError):
        gpulogreg.load(tmp_path / "cut.glr")


def test_foreign_npz_and_missing_file(tmp_path):
    np.savez(tmp_path / "arrays.npz", coef_=np.ones((1, 3)))
    with pytest.raises(ModelFormatError, match="not a gpulogreg model file"):
        gpulogreg.load(tmp_path / "arrays.npz")
    with pytest.raises(FileNotFoundError):
        gpulogreg.load(tmp_path / "absent.glr")


# --------------------------------------------------------------------------- declared attributes
def test_model_trained_with_partial_fit_round_trips(tmp_path):
    """A Generator seed is not saved, but the seed it gave and the RNG state are."""
    X, y = make_classification(600, 4, seed=7)
    model = LogisticRegression(random_state=np.random.default_rng(0))
    for rows in np.array_split(np.arange(len(y)), 3):
        model.partial_fit(X[rows], y[rows], classes=[0, 1])
    model.save(tmp_path / "m.glr")
    loaded, meta = load_with_metadata(tmp_path / "m.glr")
    assert meta["params_not_saved"] == ["random_state"]  # a Generator: stored as None
    assert loaded.random_state is None
    for method in ("decision_function", "predict_proba", "predict"):
        assert getattr(model, method)(X).tobytes() == getattr(loaded, method)(X).tobytes()
    assert loaded.solver_ == model.solver_ == "minibatch"
    model.partial_fit(X, y)
    loaded.partial_fit(X, y)
    assert_same_fit(loaded, model)


#: Continued trainings: (estimator parameters, labels, whether a full fit comes first).
_CONTINUED = {
    "fit-then-partial_fit": ({"solver": "lbfgs", "random_state": 0}, "binary", True),
    "partial_fit-seed-drawn": ({"random_state": None}, "binary", False),
    "multinomial-sgd-invscaling": (
        {"optimizer": "sgd", "learning_rate": "invscaling", "eta0": 0.05, "random_state": 3},
        "three",
        False,
    ),
    "ovr-cosine-strings": (
        {"multi_class": "ovr", "learning_rate": "cosine", "max_iter": 5, "random_state": 1},
        "strings",
        True,
    ),
    "elasticnet-class-weight": (
        {
            "l1_ratio": 0.5,
            "solver": "minibatch",
            "max_iter": 3,
            "class_weight": {0: 1.0, 1: 3.0},
            "random_state": 2,
        },
        "binary",
        True,
    ),
}


@pytest.mark.parametrize("case", sorted(_CONTINUED))
def test_continued_model_round_trips_and_continues_bit_exactly(tmp_path, case):
    """Nothing trained is lost (issue 10, principle 4): not the optimiser's state either.

    After ``partial_fit`` (alone or after ``fit``) a saved and loaded model has
    bit-identical fitted attributes and predictions, and ``partial_fit`` on it
    continues exactly as on the original: same Adam or SGD moments, step and
    epoch counters (the learning-rate schedules), shuffling RNG, seen weight.
    """
    params, labels, fit_first = _CONTINUED[case]
    n_classes = 2 if labels == "binary" else 3
    X, y = make_classification(900, 4, n_classes=n_classes, seed=8)
    if labels == "strings":
        y = np.array(["ant", "bee", "cat"], dtype=object)[y]
    chunks = np.array_split(np.arange(len(y)), 3)
    model = LogisticRegression(batch_size=64, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # minibatch fits of a few epochs do not converge
        if fit_first:
            model.fit(X, y)
    model.partial_fit(X[chunks[0]], y[chunks[0]], classes=np.unique(y))
    for step, rows in enumerate(chunks[1:]):
        model.save(tmp_path / f"m{step}.glr")
        loaded = gpulogreg.load(tmp_path / f"m{step}.glr")
        assert_same_fit(loaded, model)
        assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()
        model.partial_fit(X[rows], y[rows])
        loaded.partial_fit(X[rows], y[rows])
        assert_same_fit(loaded, model)
        assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()
        model = loaded  # the next round saves a model that was itself loaded


def test_a_loaded_models_trainers_move_to_the_data_s_array_module(tmp_path, monkeypatch):
    """Loaded trainers live on the host; partial_fit on a GPU moves them there, exactly."""
    from gpulogreg import _fit
    from tests import _fake_cupy

    X, y = make_classification(300, 3, seed=1)
    model = LogisticRegression(random_state=0).partial_fit(X, y, classes=[0, 1])
    model.save(tmp_path / "m.glr")
    state = gpulogreg.load(tmp_path / "m.glr")._partial_state
    trainer = state.trainers[0]
    _fake_cupy.install(monkeypatch)
    cupy = sys.modules["cupy"]
    moved = _fit._on_namespace(trainer, state.layout, cupy)
    assert isinstance(moved.params, _fake_cupy.DeviceArray)
    assert isinstance(moved.optimizer.m, _fake_cupy.DeviceArray)
    assert moved.params.view(np.ndarray).tobytes() == trainer.params.tobytes()
    assert (moved.epoch, moved.step, moved.optimizer.t) == (1, trainer.step, trainer.optimizer.t)
    assert moved.rng.bit_generator.state == trainer.rng.bit_generator.state
    assert _fit._on_namespace(trainer, state.layout, np) is trainer


def _partial_fit_file(tmp_path: Path) -> Path:
    X, y = make_classification(300, 4, seed=1)
    model = LogisticRegression(multi_class="ovr", random_state=0)
    model.partial_fit(X, np.arange(len(y)) % 3, classes=[0, 1, 2])
    model.save(tmp_path / "m.glr")
    return tmp_path / "m.glr"


def _first_task(meta):  # type: ignore[no-untyped-def]
    return meta["training"]["tasks"][0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["training"].update(layout=[99, 1, True]), "does not match coef_"),
        (lambda m: m["training"].update(layout=[4, 1, "yes"]), "layout .* is malformed"),
        (lambda m: m["training"].update(weight_seen=-1.0), "weight_seen is malformed"),
        (lambda m: m["training"].update(extra=1), "'training' is malformed"),
        (lambda m: m["training"]["tasks"].pop(), "does not match coef_"),
        (lambda m: m["training"].update(tasks=[]), "lists no task"),
        (lambda m: _first_task(m)["arrays"].update(adam_v="arrays/coef_"), "bad training array"),
        (
            lambda m: _first_task(m)["arrays"].update(adam_v="training_0_adam_m"),
            "listed twice",
        ),
        (lambda m: _first_task(m)["state"].pop("epoch"), "partial_fit state is malformed"),
        (
            lambda m: _first_task(m)["state"]["optimizer"].update(name="lion"),
            "unknown optimizer 'lion'",
        ),
        (lambda m: _first_task(m)["state"].update(optimizer=[1]), "partial_fit state is malformed"),
        (
            lambda m: _first_task(m)["state"]["rng_state"].update(bit_generator="MT19937"),
            "partial_fit state is malformed",
        ),
        (lambda m: m["state"].pop("history_"), "not one mini-batch history per task"),
    ],
    ids=[
        "layout-features",
        "layout-bool",
        "weight",
        "extra-key",
        "task-missing",
        "no-task",
        "member-not-training",
        "member-twice",
        "no-epoch",
        "optimizer-name",
        "optimizer-list",
        "rng",
        "no-history",
    ],
)
def test_a_malformed_partial_fit_state_is_a_model_format_error(tmp_path, edit, message):
    good = _partial_fit_file(tmp_path)
    _rewrite_metadata(good, tmp_path / "bad.glr", edit)
    with pytest.raises(ModelFormatError, match=message):
        gpulogreg.load(tmp_path / "bad.glr")


def test_training_arrays_are_checked_from_their_headers(tmp_path):
    good = _partial_fit_file(tmp_path)
    big = io.BytesIO()
    np.lib.format.write_array(big, np.zeros(10_000))
    bad = _with_member(good, tmp_path / "bad.glr", "arrays/training_1_adam_m.npy", big.getvalue())
    with pytest.raises(ModelFormatError, match="'training_1_adam_m' is missing or not 5 float64"):
        gpulogreg.load(bad)


def test_a_model_with_a_partial_fit_state_says_format_version_2(tmp_path):
    """A version-1 reader would refuse its training arrays as unknown attributes."""
    _, meta = load_with_metadata(_partial_fit_file(tmp_path))
    assert meta["format_version"] == 2


def test_saved_attributes_are_the_declared_ones(tmp_path, binary_model):
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    with zipfile.ZipFile(tmp_path / "m.glr") as zf:
        meta = json.loads(zf.read("metadata.json"))
    saved = set(meta["state"]) | set(meta["arrays"])
    assert saved <= set(LogisticRegression.FITTED_ATTRIBUTES)
    assert saved == {k for k in LogisticRegression.FITTED_ATTRIBUTES if hasattr(model, k)}


@pytest.mark.parametrize("where", ["state", "arrays"])
def test_attribute_outside_the_declared_list_is_refused(tmp_path, binary_model, where):
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    dst = tmp_path / "x.glr"
    with zipfile.ZipFile(tmp_path / "m.glr") as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "metadata.json":
                meta = json.loads(data)
                if where == "state":
                    meta["state"]["injected_"] = 1
                else:
                    meta["arrays"]["injected_"] = "arrays/injected_.npy"
                data = json.dumps(meta).encode()
            zout.writestr(name, data)
        if where == "arrays":
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.zeros(3))
            zout.writestr("arrays/injected_.npy", buf.getvalue())
    with pytest.raises(ModelFormatError, match="bad attribute name 'injected_'"):
        gpulogreg.load(dst)


def test_file_from_before_the_declared_list_still_loads(tmp_path, binary_model):
    """Format-1 files saved vars(model), with the private _n_model_classes: it is skipped."""
    model, X = binary_model
    model.save(tmp_path / "m.glr")
    _rewrite_metadata(
        tmp_path / "m.glr", tmp_path / "old.glr", lambda m: m["state"].update(_n_model_classes=1)
    )
    loaded = gpulogreg.load(tmp_path / "old.glr")
    assert not hasattr(loaded, "_n_model_classes")
    assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()


def test_array_shapes_are_checked_against_the_metadata_before_reading(tmp_path, binary_model):
    """coef_ swapped for a larger array than n_features_in_ allows: refused from its header."""
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    big = io.BytesIO()
    np.lib.format.write_array(big, np.zeros((1, 10_000)))
    with (
        zipfile.ZipFile(tmp_path / "m.glr") as src,
        zipfile.ZipFile(tmp_path / "b.glr", "w") as dst,
    ):
        for name in src.namelist():
            dst.writestr(name, big.getvalue() if name == "arrays/coef_.npy" else src.read(name))
    with pytest.raises(ModelFormatError, match=r"coef_ shape \(1, 10000\) and n_features_in_"):
        gpulogreg.load(tmp_path / "b.glr")


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["params"].update(class_weight={"__dict__": [[1, 2, 3]]}),
        lambda m: m.update(object_string_arrays=7),
        lambda m: m["state"]["history_"]["__history__"].update(objective=["x"]),
    ],
    ids=["bad-pairs", "bad-list", "bad-history"],
)
def test_malformed_metadata_is_a_model_format_error(tmp_path, binary_model, edit):
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    _rewrite_metadata(tmp_path / "m.glr", tmp_path / "bad.glr", edit)
    with pytest.raises(ModelFormatError, match="malformed"):
        gpulogreg.load(tmp_path / "bad.glr")


# --------------------------------------------------------------------------- bounded resources
def _with_member(src: Path, dst: Path, member: str, data: bytes) -> Path:
    """A copy of the model file ``src`` whose ``member`` holds ``data`` (stored)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, data if name == member else zin.read(name))
    return dst


def _npy_header(descr: str, shape: str) -> bytes:
    """A ``.npy`` version-1.0 header declaring ``descr`` and ``shape`` (written as given)."""
    text = f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}".encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


@pytest.mark.parametrize("classes", [["yes", "no"], ["no", "no"]], ids=["unsorted", "duplicated"])
def test_unsorted_or_duplicated_classes_are_refused(tmp_path, binary_model, classes):
    """Prediction maps decision columns to classes_ in order: it must be sorted and distinct."""
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array(classes))
    bad = _with_member(
        tmp_path / "m.glr", tmp_path / "bad.glr", "arrays/classes_.npy", buf.getvalue()
    )
    with pytest.raises(ModelFormatError, match="classes_ must be sorted and distinct"):
        gpulogreg.load(bad)


@pytest.mark.parametrize(
    ("labels", "stored"),
    [
        (np.array([0, 1, 2]), np.array([2, 0, 1])),
        (np.array([0, 1, 2]), np.array([0, 1, 1])),
        (_dates("D"), _dates("D")[[1, 0, 2]].view(np.int64)),  # datetimes as stored
    ],
    ids=["int-unsorted", "int-duplicated", "datetime-unsorted"],
)
def test_unsorted_or_duplicated_multiclass_classes_are_refused(tmp_path, labels, stored):
    X, y = make_classification(200, 3, n_classes=3, seed=5)
    LogisticRegression().fit(X, labels[y]).save(tmp_path / "m.glr")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, stored)
    bad = _with_member(
        tmp_path / "m.glr", tmp_path / "bad.glr", "arrays/classes_.npy", buf.getvalue()
    )
    with pytest.raises(ModelFormatError, match="classes_ must be sorted and distinct"):
        gpulogreg.load(bad)


#: Crafted ``.npy`` headers: (member, descr, shape) as written in the header.
_CRAFTED_HEADERS = {
    "U2000000000": ("classes_", "'<U2000000000'", "(2,)"),  # itemsize beyond a C int
    "U500000000": ("classes_", "'<U500000000'", "(2,)"),  # a valid 2 GB itemsize
    "shape-2**40": ("classes_", "'<U1'", "(1099511627776,)"),
    "coef-2**32-squared": ("coef_", "'<f8'", "(4294967296, 4294967296)"),
    "coef-int64-max": ("coef_", "'<f8'", "(1, 9223372036854775807)"),
    "product-overflows-int64": ("intercept_", "'<f8'", "(" + "4294967296, " * 4 + ")"),
    "negative": ("coef_", "'<f8'", "(-1, 3)"),
    "negative-pair": ("coef_", "'<f8'", "(-1, -6)"),  # product 6 x 8 = 48 bytes
    "64-dims": ("classes_", "'<U1'", "(" + "2, " * 64 + ")"),
    "huge-literal": ("classes_", "'<U1'", "(" + "9" * 5000 + ",)"),
    "expression": ("classes_", "'<U1'", "(10**400,)"),
    "subarray": ("classes_", "('<f8', (1000000000,))", "(2,)"),
    "structured": ("classes_", "[('a', '<U100000000')]", "(2,)"),
    "void": ("classes_", "'|V2000000000'", "(2,)"),
    "object": ("classes_", "'|O'", "(2,)"),
}


@pytest.mark.parametrize("case", sorted(_CRAFTED_HEADERS))
def test_crafted_array_headers_are_model_format_errors(tmp_path, binary_model, case):
    """Huge shapes and itemsizes, negative or many dimensions: refused, nothing allocated."""
    model, _ = binary_model
    model.save(tmp_path / "m.glr")
    name, descr, shape = _CRAFTED_HEADERS[case]
    data = _npy_header(descr, shape) + bytes(48)
    bad = _with_member(tmp_path / "m.glr", tmp_path / "bad.glr", f"arrays/{name}.npy", data)
    with pytest.raises(ModelFormatError):  # never a MemoryError, OverflowError, ...
        gpulogreg.load(bad)


def test_cli_refuses_a_crafted_model_in_one_line(tmp_path, binary_model, capsys):
    pytest.importorskip("pyarrow")
    from gpulogreg.cli import main

    model, X = binary_model
    model.save(tmp_path / "m.glr")
    name, descr, shape = _CRAFTED_HEADERS["U500000000"]
    bad = _with_member(
        tmp_path / "m.glr", tmp_path / "bad.glr", f"arrays/{name}.npy", _npy_header(descr, shape)
    )
    data = tmp_path / "x.csv"
    header = ",".join(f"x{j}" for j in range(X.shape[1]))
    data.write_text(header + "\n" + "\n".join(",".join(map(str, row)) for row in X[:5]) + "\n")
    code = main(["predict", "--model", str(bad), str(data), "--output", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1
    assert err.startswith("gpulogreg: error: ")
    assert "bad.glr" in err
    assert not (tmp_path / "p.csv").exists()


def _zip_by_hand(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A ZIP archive of ``(name, raw bytes, method, uncompressed size, CRC-32)`` members.

    ``zipfile`` would compress the data itself; a bomb needs its compressed
    bytes written as they are.
    """
    out = bytearray()
    directory = bytearray()
    for name, raw, method, size, crc in members:
        encoded = name.encode()
        offset = len(out)
        sizes = (crc, len(raw), size, len(encoded), 0)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, *sizes)
        out += encoded + raw
        directory += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, *sizes, 0, 0, 0, 0, offset
        )
        directory += encoded
    n = len(members)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(directory), len(out), 0)
    path.write_bytes(bytes(out + directory + end))
    return path


def _deflated_zeros(prefix: bytes, mib: int) -> bytes:
    """A raw deflate stream of ``prefix`` and ``mib`` MiB of zeros, in a few milliseconds.

    After a full flush the compressor starts afresh, so every MiB of zeros
    compresses to the same bytes: compress one and repeat it.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(bytes(1 << 20)) + comp.flush(zlib.Z_FULL_FLUSH)
    return head + block * mib + comp.flush()


#: The bombs, each the coef_ of a 6-feature binary model swapped for something
#: else, and the refusal each gets.
_BOMBS = {
    # a 1 MiB deflated member that inflates to a 1 GiB float64 array
    "deflated-1GiB": r"member 'arrays/coef_\.npy' is compressed",
    # a stored member whose header declares 8 TiB (it stores 48 bytes)
    "header-2**40": r"its header declares 8796093022208 bytes of data, the member stores 48",
    # a real 64 MiB array: the file holds it, n_features_in_ does not allow it
    "stored-64MiB": r"coef_ shape \(1, 8388608\) and n_features_in_ disagree",
}


def _bomb_member(kind: str) -> tuple[bytes, int, int, int]:
    """``(raw bytes, method, uncompressed size, CRC-32)`` of the coef_ member of bomb ``kind``.

    The deflated bomb's CRC is left 0: a reader checks it only once the member
    has been inflated, which is the harm.
    """
    if kind == "deflated-1GiB":
        header = _npy_header("'<f8'", f"(1, {(1 << 30) // 8})")
        return _deflated_zeros(header, 1024), zipfile.ZIP_DEFLATED, len(header) + (1 << 30), 0
    if kind == "header-2**40":
        data = _npy_header("'<f8'", "(1, 1099511627776)") + bytes(48)
    else:
        data = _npy_header("'<f8'", f"(1, {8 << 20})") + bytes(64 << 20)
    return data, zipfile.ZIP_STORED, len(data), zlib.crc32(data)


def _bomb(kind: str, good: Path, dst: Path) -> Path:
    """The model file ``good`` with its coef_ member swapped for bomb ``kind``."""
    members = []
    with zipfile.ZipFile(good) as zf:
        for name in zf.namelist():
            data = zf.read(name)
            member = (data, zipfile.ZIP_STORED, len(data), zlib.crc32(data))
            if name == "arrays/coef_.npy":
                member = _bomb_member(kind)
            members.append((name, *member))
    return _zip_by_hand(dst, members)


#: Run in a fresh interpreter: the peak RSS (MiB) after importing the model-file
#: reader, after refusing the bomb with it, after importing gpulogreg.persistence
#: (and with it the estimator, scikit-learn, SciPy, pandas), and after refusing it
#: again with gpulogreg.load.
_MEASURE = """
import json, resource, sys
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
path, names = sys.argv[1], json.loads(sys.argv[2])
from gpulogreg import _model_file
out = {"reader_imported": peak()}
try:
    _model_file.read_model_file(path, attribute_names=names)
except _model_file.ModelFormatError as exc:
    out["reader_error"] = str(exc)
out["reader_refused"] = peak()
import gpulogreg.persistence
out["load_imported"] = peak()
try:
    gpulogreg.persistence.load(path)
except gpulogreg.persistence.ModelFormatError as exc:
    out["load_error"] = str(exc)
out["load_refused"] = peak()
print(json.dumps(out))
"""


#: Starts its arguments as a command. Linux carries a process's peak RSS across
#: ``exec`` from the memory it had (a copy of its parent's after ``fork``), so a
#: child of the test process would start with pytest's peak; the child of this
#: small launcher starts with the launcher's.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
@pytest.mark.parametrize("kind", sorted(_BOMBS))
def test_refusing_a_bomb_stays_under_100_mb(tmp_path, kind):
    """Peak RSS while refusing a crafted model file (issue 10, principle 6).

    Measured in a fresh interpreter with ``ru_maxrss``. The reader alone (NumPy
    and the container) peaks far below 100 MB, so its *absolute* peak is held
    under 100 MB. ``gpulogreg.load`` imports the estimator, which imports
    scikit-learn, SciPy and pandas: that import alone peaks near 180 MB, so for
    it the *growth* of the peak while refusing is held under 100 MB.
    """
    X, y = make_classification(100, 6, seed=1)
    LogisticRegression().fit(X, y).save(tmp_path / "good.glr")
    bomb = _bomb(kind, tmp_path / "good.glr", tmp_path / "bomb.glr")
    names = json.dumps(list(LogisticRegression.FITTED_ATTRIBUTES))
    run = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-c", _MEASURE, str(bomb), names],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(gpulogreg.__file__).parents[1])},
    )
    peaks = json.loads(run.stdout)
    print(kind, peaks)
    assert re.search(_BOMBS[kind], peaks["reader_error"])
    assert peaks["load_error"] == peaks["reader_error"]
    assert peaks["reader_refused"] < 100
    assert peaks["load_refused"] - peaks["load_imported"] < 100
