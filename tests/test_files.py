"""The no-pickle container shared by model files and checkpoints: round trips and refusals."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpulogreg import _files


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _write_zip(path: Path, members: dict[str, bytes], **kw) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(path, "w", **kw) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _meta(**arrays: str) -> bytes:
    return json.dumps({"arrays": {k: f"arrays/{k}.npy" for k in arrays}, "kind": "t"}).encode()


def test_round_trip_keeps_arrays_and_metadata(tmp_path: Path) -> None:
    arrays = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "scalar": np.array(3.5),
        "names": np.array(["a", "bé"]),
        "flags": np.array([True, False]),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    }
    meta = {"best": math.inf, "history": [1.0, math.nan, -math.inf], "nested": {"k": (1, 2)}}
    _files.write(tmp_path / "f.bin", meta, arrays)
    got_meta, got = _files.read(tmp_path / "f.bin")
    assert got_meta["best"] == math.inf
    assert math.isnan(got_meta["history"][1])
    assert got_meta["history"][2] == -math.inf
    assert got_meta["nested"] == {"k": [1, 2]}  # JSON has lists, not tuples
    assert set(got) == set(arrays)
    for name, arr in arrays.items():
        assert got[name].dtype == arr.dtype
        assert got[name].shape == arr.shape
        np.testing.assert_array_equal(got[name], arr)
    # Strict JSON (no NaN tokens) that any tool reads; NumPy opens it without pickle.
    with zipfile.ZipFile(tmp_path / "f.bin") as zf:
        text = zf.read("metadata.json").decode()
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    assert "NaN" not in text
    assert "Infinity" not in text
    with np.load(tmp_path / "f.bin", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["arrays/w"], arrays["w"])


def test_write_refuses_what_read_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    with pytest.raises(TypeError, match=r"'o'.*without pickle"):
        _files.write(path, {}, {"o": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="not a Python identifier"):
        _files.write(path, {}, {"../x": np.zeros(1)})
    with pytest.raises(ValueError, match="'arrays' is reserved"):
        _files.write(path, {"arrays": {}}, {})
    with pytest.raises(ValueError, match="'__float__' is reserved"):
        _files.write(path, {"x": {"__float__": "nan"}}, {})
    assert not path.exists()


def test_check_sees_headers_before_any_data_is_read(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    _files.write(path, {"n": 3}, {"w": np.zeros((2, 3)), "c": np.array(["x", "yz"])})
    seen = {}

    class TooBigError(Exception):
        pass

    def check(meta, headers):  # type: ignore[no-untyped-def]
        seen.update(headers)
        if headers["w"].shape[1] != meta["n"] + 1:
            raise TooBigError

    with pytest.raises(TooBigError):  # the caller's exception, unchanged
        _files.read(path, check=check)
    assert seen["w"] == _files.ArrayHeader((2, 3), np.dtype(np.float64), 48)
    assert seen["c"].dtype == np.dtype("<U2")


def test_header_declaring_more_than_the_member_stores_is_refused_unallocated(
    tmp_path: Path,
) -> None:
    """A few bytes claiming a 8 TB array: refused from the header, nothing allocated."""
    real = _npy(np.zeros(2))
    header_len = len(_npy(np.zeros(0)))
    huge = np.lib.format.header_data_from_array_1_0(np.zeros(2))
    huge["shape"] = (10**12,)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, huge)
    forged = buf.getvalue() + real[header_len:]
    _write_zip(tmp_path / "f.bin", {"metadata.json": _meta(w="w"), "arrays/w.npy": forged})
    with pytest.raises(_files.ContainerError, match=r"declares 8000000000000 bytes.*stores 16"):
        _files.read(tmp_path / "f.bin")


@pytest.mark.parametrize(
    ("members", "kw", "message"),
    [
        (
            {"metadata.json": _meta(w="w"), "arrays/w.npy": _npy(np.zeros(3))},
            {"compression": zipfile.ZIP_DEFLATED},
            "compressed",
        ),
        ({"metadata.json": _meta(w="w")}, {}, "'arrays/w.npy' is missing"),
        (
            {"metadata.json": _meta(), "arrays/w.npy": _npy(np.zeros(3))},
            {},
            "unexpected member 'arrays/w.npy'",
        ),
        (
            {"metadata.json": json.dumps({"arrays": {"w": "../w.npy"}}).encode(), "../w.npy": b""},
            {},
            "bad array entry 'w'",
        ),
        ({"metadata.json": b'{"arrays": {}, "a": 1, "a": 2}'}, {}, "duplicate key 'a'"),
        ({"metadata.json": b'{"arrays": {}, "a": NaN}'}, {}, "NaN is not JSON"),
        ({"metadata.json": b'{"arrays": {}, "a": {"__float__": "1e999"}}'}, {}, "bad float tag"),
        ({"metadata.json": b"[1, 2]"}, {}, "not a JSON object"),
        (
            {"metadata.json": b'{"arrays": {}, "x": ' + b"[" * 65 + b"]" * 65 + b"}"},
            {},
            "deeper than 64",
        ),
        ({"metadata.json": b"[" * 100_000 + b"]" * 100_000}, {}, "not valid JSON"),
        ({"metadata.json": b'{"kind": "t"}'}, {}, "'arrays' is missing"),
        (
            {"metadata.json": _meta(w="w"), "arrays/w.npy": b"\x93NUMPY\x01\x00garbage"},
            {},
            "corrupt",
        ),
        (
            {"metadata.json": _meta(w="w"), "arrays/w.npy": _npy(np.zeros(1, dtype="M8[s]"))},
            {},
            "unsupported dtype",
        ),
    ],
    ids=[
        "deflated",
        "missing",
        "unlisted",
        "path-entry",
        "dup-key",
        "nan-token",
        "bad-tag",
        "not-object",
        "too-deep",
        "recursion",
        "no-arrays",
        "bad-npy",
        "datetime",
    ],
)
def test_layout_refusals(tmp_path: Path, members, kw, message) -> None:  # type: ignore[no-untyped-def]
    _write_zip(tmp_path / "f.bin", members, **kw)
    with pytest.raises(_files.ContainerError, match=message):
        _files.read(tmp_path / "f.bin")


def test_foreign_files_say_so_and_list_their_members(tmp_path: Path) -> None:
    (tmp_path / "garbage").write_bytes(b"not a zip")
    with pytest.raises(_files.ForeignFileError, match="not a zip") as info:
        _files.read(tmp_path / "garbage")
    assert info.value.members is None
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(_files.ForeignFileError, match=r"no metadata\.json") as info:
        _files.read(tmp_path / "plain.npz")
    assert info.value.members == ("a.npy",)
    with pytest.raises(_files.ForeignFileError, match="directory"):
        _files.read(tmp_path)
    with pytest.raises(FileNotFoundError):
        _files.read(tmp_path / "absent")


def test_damaged_member_is_refused(tmp_path: Path) -> None:
    _files.write(tmp_path / "f.bin", {}, {"w": np.arange(1000.0)})
    data = bytearray((tmp_path / "f.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte inside the array's data: the CRC catches it
    (tmp_path / "flipped.bin").write_bytes(bytes(data))
    with pytest.raises(_files.ContainerError, match="corrupt"):
        _files.read(tmp_path / "flipped.bin")
