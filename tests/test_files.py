"""The no-pickle container shared by model files and checkpoints: round trips and refusals."""

from __future__ import annotations

import io
import json
import math
import os
import re
import socket
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
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


# --------------------------------------------------------------------------- atomic writes
def _special_file(kind: str, name: str) -> Path:
    """A FIFO, socket or character device named ``name`` in the current directory."""
    path = Path(name)
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(name)  # relative: a socket's path is limited to about 100 bytes
    else:
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
        except PermissionError:
            pytest.skip("creating a device node needs CAP_MKNOD")
    return path


@pytest.mark.parametrize("kind", ["FIFO", "socket", "character device"])
def test_atomic_write_refuses_to_replace_a_non_regular_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _special_file(kind, "out")
    link = Path("link")
    link.symlink_to(path)
    for destination in (path, link):
        with (
            pytest.raises(OSError, match=f"refusing to replace {destination}: a {kind}, not a"),
            _files.atomic_write(destination) as handle,
        ):
            handle.write(b"x")
    assert stat.S_IFMT(path.lstat().st_mode) == stat.S_IFMT(os.stat(path).st_mode) != stat.S_IFREG
    assert link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "out"]  # no temporary file


def test_atomic_write_through_a_symlink_replaces_its_target(tmp_path: Path) -> None:
    target = tmp_path / "models" / "v3.glr"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "current.glr"
    link.symlink_to(Path("models") / "v3.glr")
    chain = tmp_path / "latest.glr"
    chain.symlink_to(link.name)
    with _files.atomic_write(link) as handle:
        handle.write(b"new")
    assert target.read_bytes() == b"new"
    _files.write(chain, {"k": 1}, {"w": np.zeros(2)})  # the container's writes too
    assert _files.read(target)[0] == {"k": 1}
    assert os.readlink(link) == os.path.join("models", "v3.glr")
    assert os.readlink(chain) == link.name
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert files == ["current.glr", "latest.glr", "models", os.path.join("models", "v3.glr")]


def test_atomic_write_through_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("new.bin")
    with _files.atomic_write(tmp_path / "link", "w") as handle:
        handle.write("fresh")
    assert (tmp_path / "new.bin").read_text() == "fresh"
    assert (tmp_path / "link").is_symlink()


def test_atomic_write_refuses_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with (
        pytest.raises(OSError, match="loop of symbolic links"),
        _files.atomic_write(tmp_path / "a"),
    ):
        pass
    assert (tmp_path / "a").is_symlink()
    assert (tmp_path / "b").is_symlink()


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("missing_directory", FileNotFoundError, "output directory does not exist: .*no$"),
        ("parent_is_a_file", NotADirectoryError, "not a directory: .*file.txt$"),
        ("directory", IsADirectoryError, "is a directory"),
        ("trailing_separator", IsADirectoryError, "names a directory"),
        ("unwritable_directory", PermissionError, "output directory is not writable"),
    ],
)
def test_check_destination_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, error: type, message: str
) -> None:
    (tmp_path / "file.txt").write_text("")
    (tmp_path / "sub").mkdir()
    path = {
        "missing_directory": str(tmp_path / "no" / "out.bin"),
        "parent_is_a_file": str(tmp_path / "file.txt" / "out.bin"),
        "directory": str(tmp_path / "sub"),
        "trailing_separator": str(tmp_path / "new") + os.sep,
        "unwritable_directory": str(tmp_path / "sub" / "out.bin"),
    }[case]
    if case == "unwritable_directory":  # root may write anywhere: deny it for this directory
        real_access = os.access
        denied = str(tmp_path / "sub")
        monkeypatch.setattr(os, "access", lambda p, m: p != denied and real_access(p, m))
    with pytest.raises(error, match=message):
        _files.check_destination(path)
    with pytest.raises(error, match=message), _files.atomic_write(path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "sub"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any directory")
def test_check_destination_refuses_a_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match="output directory is not writable"):
            _files.check_destination(locked / "out.bin")
    finally:
        locked.chmod(0o700)


def test_check_destination_returns_the_file_to_replace(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("real.bin")
    assert _files.check_destination(tmp_path / "link") == str(tmp_path.resolve() / "real.bin")
    assert _files.check_destination(tmp_path / "plain") == str(tmp_path.resolve() / "plain")


def _leftover_name(destination: str, pid: int) -> str:
    return f".{destination}.gpulogreg-{pid}-k1ll3d_x.tmp"


def _finished_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[str]]:
    """A live process that holds an exclusive lock on the file named by its first line of stdin."""
    script = (
        "import fcntl, sys, time\n"
        "f = open(sys.stdin.readline().strip(), 'rb+')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield proc
    proc.kill()
    proc.wait()


def test_temporary_file_names_its_destination_and_its_writer(tmp_path: Path) -> None:
    with _files.atomic_write(tmp_path / "out.bin") as handle:
        handle.write(b"x")
        names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1
    assert re.fullmatch(rf"\.out\.bin\.gpulogreg-{os.getpid()}-[a-z0-9_]+\.tmp", names[0])


def test_the_next_write_removes_what_a_killed_write_left(tmp_path: Path) -> None:
    """A writer killed mid-write leaves its temporary file; the next write removes it."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    writer = (
        "import sys, time\n"
        "from gpulogreg import _files\n"
        "with _files.atomic_write(sys.argv[1]) as f:\n"
        "    f.write(b'half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", writer, str(target)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "writing\n"
    proc.kill()  # SIGKILL: no cleanup runs
    proc.wait()
    (leftover,) = (p for p in tmp_path.iterdir() if p.name != "out.bin")
    assert leftover.name.startswith(f".out.bin.gpulogreg-{proc.pid}-")
    assert target.read_bytes() == b"old"
    with _files.atomic_write(target) as handle:
        handle.write(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert target.read_bytes() == b"new"


def test_only_leftovers_of_the_same_destination_are_removed(tmp_path: Path) -> None:
    dead = _finished_pid()
    mine = tmp_path / _leftover_name("out.bin", dead)
    others = [
        _leftover_name("other.bin", dead),  # another destination's
        _leftover_name("out.bin.gz", dead),  # a longer name's
        f".out.bin.{dead}.tmp",  # not ours
        f".out.bin.gpulogreg-{dead}-x.y.tmp",  # not a name we make
    ]
    for name in [mine.name, *others]:
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / "link").symlink_to("out.bin")
    with _files.atomic_write(tmp_path / "link") as handle:  # through a link: its target's leftovers
        handle.write(b"new")
    assert not mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, "link", "out.bin"])


def test_a_live_writers_temporary_file_is_kept(tmp_path: Path, sleeper) -> None:  # type: ignore[no-untyped-def]
    alive = tmp_path / _leftover_name("out.bin", sleeper.pid)
    alive.write_bytes(b"in progress")
    with _files.atomic_write(tmp_path / "out.bin") as handle:
        handle.write(b"new")
    assert alive.read_bytes() == b"in progress"


def test_a_locked_temporary_file_is_kept_whatever_its_pid(tmp_path: Path, sleeper) -> None:  # type: ignore[no-untyped-def]
    """A writer in another PID namespace (a container) has a pid not seen here: its lock shows."""
    locked = tmp_path / _leftover_name("out.bin", _finished_pid())
    locked.write_bytes(b"in progress")
    sleeper.stdin.write(f"{locked}\n")
    sleeper.stdin.flush()
    assert sleeper.stdout.readline() == "locked\n"
    with _files.atomic_write(tmp_path / "out.bin") as handle:
        handle.write(b"new")
    assert locked.read_bytes() == b"in progress"
    sleeper.kill()
    sleeper.wait()
    with _files.atomic_write(tmp_path / "out.bin") as handle:
        handle.write(b"newer")
    assert not locked.exists()


# --------------------------------------------------------------------------- metadata bounds
@pytest.mark.parametrize(
    "filler",
    [b"{}", b"[]", b"0", b'""'],  # empty objects: the 2.8 GB case of a 57 MiB member
)
def test_metadata_with_too_many_values_is_refused_before_it_is_parsed(
    tmp_path: Path, filler: bytes
) -> None:
    import tracemalloc

    many = b"[" + b",".join([filler] * (_files.MAX_METADATA_VALUES + 1)) + b"]"
    document = b'{"arrays": {}, "bloat": ' + many + b"}"
    assert len(document) < _files.MAX_METADATA_BYTES
    path = tmp_path / "bloat.npz"
    _write_zip(path, {"metadata.json": document})
    tracemalloc.start()
    try:
        with pytest.raises(_files.ContainerError, match="more than 500,000 values"):
            _files.read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(document) + (1 << 20)  # the member's bytes, never a parse


def test_metadata_within_the_bounds_reads_and_the_writer_refuses_beyond(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    history = {"objective": [0.5] * 100_000, "optimality": [1e-3] * 100_000}
    _files.write(path, {"history": history}, {})
    assert _files.read(path)[0]["history"] == history
    with pytest.raises(ValueError, match="beyond what the reader accepts"):
        _files.write(tmp_path / "g.bin", {"x": [0] * _files.MAX_METADATA_VALUES}, {})
    assert not (tmp_path / "g.bin").exists()
