"""Model files: bit-identical round trips, and refusal of anything that is not ours."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import gpulogreg
from gpulogreg import LogisticRegression
from gpulogreg.persistence import FORMAT_VERSION, ModelFormatError, load_with_metadata, save_model
from tests._helpers import make_classification


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
    """Only FITTED_ATTRIBUTES are saved: the live partial_fit trainer stays behind."""
    X, y = make_classification(600, 4, seed=7)
    model = LogisticRegression(random_state=np.random.default_rng(0))
    for rows in np.array_split(np.arange(len(y)), 3):
        model.partial_fit(X[rows], y[rows], classes=[0, 1])
    assert "_partial_state" in vars(model)
    model.save(tmp_path / "m.glr")
    loaded, meta = load_with_metadata(tmp_path / "m.glr")
    assert meta["params_not_saved"] == ["random_state"]  # a Generator: stored as None
    assert loaded.random_state is None
    assert "_partial_state" not in vars(loaded)
    for method in ("decision_function", "predict_proba", "predict"):
        assert getattr(model, method)(X).tobytes() == getattr(loaded, method)(X).tobytes()
    assert loaded.solver_ == model.solver_ == "minibatch"


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
