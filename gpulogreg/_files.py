"""Files the package writes: atomic writes, and the one no-pickle container.

:func:`atomic_write` is the one way every output file of the package is
written: a temporary file in the destination's directory, flushed and fsynced,
then renamed over the destination, so a failure leaves no partial file and an
existing file untouched. :func:`check_destination` is its first step, which
commands also take before they read any data: a symbolic link is written
through to its target, a FIFO, socket or device is refused, and the temporary
files of killed writes are recognised by name and removed by the next write.

The container (model files and checkpoints)
-------------------------------------------
One ZIP archive laid out like NumPy's ``.npz`` (members stored, not
compressed), so ``numpy.load(path, allow_pickle=False)`` opens it and any zip
tool lists it:

``metadata.json``
    Strict UTF-8 JSON: the caller's metadata plus ``"arrays": {name: member}``,
    the container's list of its arrays. A float JSON cannot hold (NaN,
    infinity) is written as ``{"__float__": "nan"}`` (or ``"inf"``,
    ``"-inf"``) and read back as that float.
``arrays/<name>.npy``
    One ``.npy`` member per array: numbers, bools or fixed-width unicode, never
    Python objects.

:func:`read` trusts nothing in the file. It must be a ZIP archive whose
members are exactly ``metadata.json`` and the ``arrays/<name>.npy`` the
metadata lists, each stored uncompressed and each lying inside the file; the
metadata is bounded in size and in its number of values (counted before it is
parsed), strict JSON, free of duplicate keys; an array
whose header declares Python objects is refused before a byte of it is read
(and the data are read with ``allow_pickle=False`` besides); an array whose
header declares more or fewer bytes than its member stores is refused before
anything is allocated, so the arrays a file makes the reader allocate are at
most the file's size. A caller's ``check`` then sees the metadata and every
array's declared shape and dtype before any array data is read: that is where
each kind of file (model, checkpoint) bounds its arrays by what its metadata
says. Whether the metadata names the right format and version is the caller's
business too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, NamedTuple

import numpy as np

from gpulogreg._errors import InputValueError

__all__ = [
    "ARRAY_PREFIX",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_VALUES",
    "METADATA_MEMBER",
    "ArrayHeader",
    "ContainerError",
    "ForeignFileError",
    "atomic_write",
    "check_destination",
    "read",
    "write",
]

#: Name of the metadata member.
METADATA_MEMBER = "metadata.json"
#: Folder of the array members inside the archive.
ARRAY_PREFIX = "arrays/"
#: Largest metadata member read or written (bytes): a model's metadata is a few
#: kB plus its histories (four numbers per iteration and task), a checkpoint's
#: likewise; anything far larger is not ours.
MAX_METADATA_BYTES = 16 * 1024 * 1024
#: Most JSON values (numbers, strings, lists, objects) the metadata may hold,
#: counted before it is parsed (an upper bound: commas and brackets). Parsing
#: costs memory per value, not per byte (a Python object each: 16 MiB of
#: ``{},`` would take 2.8 GB); 500,000 values stay within tens of MB, and
#: hold the histories of 100 one-vs-rest models of 1,000 iterations each.
MAX_METADATA_VALUES = 500_000
#: Metadata key under which the container lists its arrays (reserved).
_ARRAYS_KEY = "arrays"
#: Tag of a non-finite float in the metadata (JSON has no NaN or infinity).
_FLOAT_TAG = "__float__"
#: Dtype kinds an array may have: bool, signed and unsigned integers, floats,
#: complex numbers, fixed-width unicode strings.
_ARRAY_KINDS = "biufcU"
#: Deepest nesting of the metadata read: ours nests a few levels (parameters ->
#: class_weight -> key/value pairs, histories); deeper is not ours, and would
#: exhaust the recursion of the JSON decoder and of the readers that walk it.
_MAX_DEPTH = 64
#: The mark of the package's temporary files: ``.{name}.gpulogreg-{pid}-{random}.tmp``.
_TMP_MARK = "gpulogreg"
#: Kinds of files (not regular, not directories) a write refuses to replace, by ``st_mode``.
_NON_REGULAR = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)
#: ``.npy`` header versions read (1.0 and 2.0; 3.0 only adds UTF-8 field names
#: of structured dtypes, which are refused anyway).
_NPY_VERSIONS = (1, 2)


class ContainerError(InputValueError):
    """A file that is not a readable container; ``reason`` says why (the message adds the path)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ForeignFileError(ContainerError):
    """Not a container at all: not a file, not a ZIP archive, or one without ``metadata.json``.

    ``members`` lists the archive's members (None when it is not a ZIP archive),
    so a caller can recognise an older layout of its own.
    """

    def __init__(self, path: str, reason: str, members: tuple[str, ...] | None = None) -> None:
        super().__init__(path, reason)
        self.members = members


class ArrayHeader(NamedTuple):
    """What an array member's ``.npy`` header declares, read before its data."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    nbytes: int


# --------------------------------------------------------------------------- atomic writes
def check_destination(path: str | os.PathLike[str]) -> str:
    """The file a write to ``path`` replaces, once it is known that the write can be done.

    :func:`atomic_write` calls this first; a command calls it before it reads
    any data, so that an output that cannot be written fails the command
    before the work is done rather than after.

    Parameters
    ----------
    path : path
        The destination as the caller names it. A symbolic link is followed
        (to the end of a chain of them): the write replaces the file it points
        to, which need not exist yet, and keeps the link.

    Returns
    -------
    str
        The absolute path, symbolic links resolved, of the file to replace.

    Raises
    ------
    FileNotFoundError
        The destination's directory does not exist.
    NotADirectoryError
        The destination's "directory" is a file.
    PermissionError
        The destination's directory is not writable.
    IsADirectoryError
        ``path`` is a directory, or ends in a path separator.
    OSError
        ``path`` is a FIFO, a socket or a device (``/dev/null``, say): a
        rename would replace it with a regular file; or a loop of symbolic
        links.
    """
    path = os.fspath(path)
    if path.endswith(os.sep) or (os.altsep is not None and path.endswith(os.altsep)):
        raise IsADirectoryError(f"{path} names a directory")
    target = os.path.realpath(path)
    if os.path.islink(target):
        raise OSError(f"{path}: a loop of symbolic links")
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            raise NotADirectoryError(f"not a directory: {directory}")
        raise FileNotFoundError(f"output directory does not exist: {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"output directory is not writable: {directory}")
    _refuse_non_regular(path, target)
    return target


def _refuse_non_regular(path: str, target: str) -> None:
    """Refuse a ``target`` (named ``path`` by the caller) that exists and is not a regular file."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a directory")
    kind = next((name for is_kind, name in _NON_REGULAR if is_kind(mode)), "special file")
    raise OSError(f"refusing to replace {path}: a {kind}, not a regular file")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success fsync it and rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left as it
    was (absent or with its old contents). The final file gets the usual
    permissions (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.

    The destination is checked first (:func:`check_destination`). A symbolic
    link is written through: its target is replaced atomically (the temporary
    file lies in the target's directory) and the link is kept. An existing
    FIFO, socket or device (``/dev/null``, say) is refused, never replaced by
    a regular file.

    The temporary file is ``.{name}.gpulogreg-{pid}-{random}.tmp``, where
    ``name`` is the replaced file's name and ``pid`` the writer's process id;
    the writer holds an exclusive ``flock`` on it while it writes. A write
    killed before its rename leaves that file behind; the next write to the
    same file removes it if its writer is gone: its pid is no running process
    and no one holds its lock. A write in progress in another live process
    (in another PID namespace too, such as a container writing to a shared
    volume) is never touched.

    Raises
    ------
    FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError, OSError
        The destination cannot be written (see :func:`check_destination`).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    target = check_destination(path)
    directory, name = os.path.split(target)
    _remove_leftovers(directory, name)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{name}.{_TMP_MARK}-{os.getpid()}-", suffix=".tmp", dir=directory
    )
    try:
        _lock(fd)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _lock(fd: int) -> None:
    """Hold an exclusive lock on the open temporary file: it says "a write in progress"."""
    if os.name != "posix":
        return
    import fcntl

    with contextlib.suppress(OSError):  # a file system without locks: the pid still says it
        fcntl.flock(fd, fcntl.LOCK_EX)


def _remove_leftovers(directory: str, name: str) -> None:
    """Remove the temporary files that killed writes to ``name`` left (best effort)."""
    pattern = re.compile(re.escape(f".{name}.{_TMP_MARK}-") + r"(\d+)-[a-z0-9_]+\.tmp")
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and entry.is_file(follow_symlinks=False) and not _alive(int(match[1])):
            _remove_unless_locked(entry.path)


def _alive(pid: int) -> bool:
    """Whether ``pid`` may be a running process (when in doubt: yes, the file is kept)."""
    if os.name != "posix":
        return True  # no harmless probe: os.kill would signal the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process; not a pid at all
        return True
    return True


def _remove_unless_locked(path: str) -> None:
    """Remove ``path`` unless a writer holds its lock (one whose pid is not visible here)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)
    except OSError:
        pass  # locked (a write in progress), or removed meanwhile
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- metadata JSON
def _tag_floats(value: Any) -> Any:
    """``value`` with non-finite floats tagged; refuses dicts that hold the tag themselves."""
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT_TAG: repr(value)}
    if isinstance(value, Mapping):
        if _FLOAT_TAG in value:
            raise ValueError(f"metadata key {_FLOAT_TAG!r} is reserved")
        return {k: _tag_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag_floats(v) for v in value]
    return value


def _untag_floats(value: Any, path: str, depth: int = 0) -> Any:
    """``value`` with tagged floats restored; refuses nesting deeper than ``_MAX_DEPTH``."""
    if not isinstance(value, (list, dict)):
        return value
    if depth >= _MAX_DEPTH:
        raise ContainerError(path, f"the metadata nests deeper than {_MAX_DEPTH} levels")
    if isinstance(value, list):
        return [_untag_floats(v, path, depth + 1) for v in value]
    if _FLOAT_TAG in value:
        text = value[_FLOAT_TAG]
        if len(value) != 1 or text not in ("nan", "inf", "-inf"):
            raise ContainerError(path, f"bad float tag {value!r} in the metadata")
        return float(text)
    return {k: _untag_floats(v, path, depth + 1) for k, v in value.items()}


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict; a key given twice (read differently by other tools) is refused."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


# --------------------------------------------------------------------------- write
def write(
    path: str | os.PathLike[str], meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> None:
    """Write ``meta`` and ``arrays`` to exactly ``path``, atomically, without pickle.

    Parameters
    ----------
    path : path
        Written as given (no extension is added); replaced atomically.
    meta : mapping
        JSON-serialisable (str keys; floats may be non-finite). The key
        ``"arrays"`` is the container's own.
    arrays : mapping of str -> ndarray
        Names are Python identifiers; dtypes numbers, bools or fixed-width
        unicode strings.

    Raises
    ------
    TypeError
        An array of another dtype (objects, structured, datetimes) or metadata
        JSON cannot hold.
    ValueError
        A reserved metadata key or a bad array name.
    """
    if _ARRAYS_KEY in meta:
        raise ValueError(f"metadata key {_ARRAYS_KEY!r} is reserved for the container")
    stored: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"array name {name!r} is not a Python identifier")
        arr = np.asarray(value)
        if arr.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(
                f"array {name!r}: dtype {arr.dtype} cannot be stored without pickle "
                "(use numbers, bools or strings)"
            )
        stored[name] = np.require(arr, requirements="C")
    document = dict(_tag_floats(meta))
    document[_ARRAYS_KEY] = {name: _member(name) for name in stored}
    text = json.dumps(document, indent=1, sort_keys=True, allow_nan=False)
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_METADATA_BYTES or _json_values_bound(encoded) > MAX_METADATA_VALUES:
        raise ValueError(
            f"the metadata ({len(encoded):,} bytes, up to {_json_values_bound(encoded):,} "
            f"values) is beyond what the reader accepts ({MAX_METADATA_BYTES:,} bytes, "
            f"{MAX_METADATA_VALUES:,} values): nothing was written"
        )
    with atomic_write(path) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(METADATA_MEMBER, encoded)
        for name, arr in stored.items():
            with zf.open(_member(name), "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _json_values_bound(document: bytes) -> int:
    """An upper bound on the values of a JSON document, without parsing it.

    Every value but the first of a list or object follows a comma, and every
    list or object opens with a bracket (commas and brackets inside strings
    only raise the bound).
    """
    return document.count(b",") + document.count(b"[") + document.count(b"{") + 1


def _member(name: str) -> str:
    return f"{ARRAY_PREFIX}{name}.npy"


# --------------------------------------------------------------------------- read
def read(
    path: str | os.PathLike[str],
    *,
    check: Callable[[dict[str, Any], dict[str, ArrayHeader]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a container written by :func:`write`, trusting nothing in it.

    Parameters
    ----------
    path : path
    check : callable(meta, headers), optional
        Called with the metadata and every array's :class:`ArrayHeader` after
        the layout was checked and before any array data is read; raises to
        refuse the file (its exception propagates unchanged).

    Returns
    -------
    meta : dict
        The metadata as written (without the container's ``"arrays"`` key).
    arrays : dict of str -> ndarray

    Raises
    ------
    FileNotFoundError
    ForeignFileError
        A directory, not a ZIP archive, or an archive without ``metadata.json``.
    ContainerError
        Anything else wrong with the file (the message says what).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if os.path.isdir(path):
        raise ForeignFileError(path, "a directory, not a file")
    if not zipfile.is_zipfile(path):
        raise ForeignFileError(path, "not a zip/npz archive")
    with _corrupt_as_container_error(path):
        zf = zipfile.ZipFile(path)
    with zf:
        with _corrupt_as_container_error(path):
            meta, members = _read_layout(zf, path)
            headers = {name: _read_header(zf, name, member, path) for name, member in members}
        if check is not None:
            check(meta, headers)
        with _corrupt_as_container_error(path):
            arrays = {
                name: _read_data(zf, name, member, headers[name], path) for name, member in members
            }
    return meta, arrays


@contextlib.contextmanager
def _corrupt_as_container_error(path: str) -> Iterator[None]:
    """Turn what a damaged archive raises into a :class:`ContainerError`."""
    try:
        yield
    except ContainerError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise ContainerError(path, f"corrupt file ({exc})") from None


def _read_layout(zf: zipfile.ZipFile, path: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The metadata and the (name, member) of each array, once the members are checked."""
    names = zf.namelist()
    if METADATA_MEMBER not in names:
        raise ForeignFileError(
            path,
            f"no {METADATA_MEMBER}; members: {', '.join(names[:5]) or 'none'}",
            members=tuple(names),
        )
    if len(set(names)) != len(names):
        raise ContainerError(path, "the archive lists a member twice")
    file_size = os.path.getsize(path)
    for info in zf.infolist():
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise ContainerError(path, f"member {info.filename!r} is compressed (ours never are)")
        if info.header_offset + info.compress_size > file_size:
            raise ContainerError(path, f"member {info.filename!r} runs past the end of the file")
    if zf.getinfo(METADATA_MEMBER).file_size > MAX_METADATA_BYTES:
        raise ContainerError(path, f"{METADATA_MEMBER} is implausibly large")
    raw = zf.read(METADATA_MEMBER)
    if _json_values_bound(raw) > MAX_METADATA_VALUES:
        raise ContainerError(
            path, f"{METADATA_MEMBER} holds more than {MAX_METADATA_VALUES:,} values (not ours)"
        )
    try:
        meta = json.loads(
            raw.decode("utf-8"),
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ContainerError(path, f"{METADATA_MEMBER} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ContainerError(path, f"{METADATA_MEMBER} is not a JSON object")
    listed = meta.pop(_ARRAYS_KEY, None)
    if not isinstance(listed, dict):
        raise ContainerError(path, f"metadata field {_ARRAYS_KEY!r} is missing or malformed")
    members = []
    for name, member in listed.items():
        if not (name.isidentifier() and member == _member(name)):
            raise ContainerError(path, f"bad array entry {name!r}: {member!r}")
        members.append((name, member))
    unexpected = sorted(set(names) - {METADATA_MEMBER, *listed.values()})
    if unexpected:
        raise ContainerError(
            path, f"unexpected member {unexpected[0]!r}; refusing a file that is not ours"
        )
    missing = sorted(set(listed.values()) - set(names))
    if missing:
        raise ContainerError(path, f"array member {missing[0]!r} is missing")
    return _untag_floats(meta, path), members


def _read_header(zf: zipfile.ZipFile, name: str, member: str, path: str) -> ArrayHeader:
    """The member's ``.npy`` header, checked against what the member stores."""
    with zf.open(member) as fp:
        major, _ = np.lib.format.read_magic(fp)
        if major not in _NPY_VERSIONS:
            raise ContainerError(path, f"array {name!r}: unsupported .npy version {major}")
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(fp)
        data_bytes = zf.getinfo(member).file_size - fp.tell()
    if dtype.hasobject:
        raise ContainerError(path, f"array {name!r} holds Python objects (pickle); refused unread")
    if dtype.kind not in _ARRAY_KINDS:
        raise ContainerError(path, f"array {name!r} has unsupported dtype {dtype}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != data_bytes:
        raise ContainerError(
            path,
            f"array {name!r}: its header declares {nbytes} bytes of data, "
            f"the member stores {data_bytes}",
        )
    return ArrayHeader(tuple(shape), dtype, nbytes)


def _read_data(
    zf: zipfile.ZipFile, name: str, member: str, header: ArrayHeader, path: str
) -> np.ndarray:
    with zf.open(member) as fp:
        arr = np.lib.format.read_array(fp, allow_pickle=False)
    if arr.shape != header.shape or arr.dtype != header.dtype:
        raise ContainerError(path, f"array {name!r} changed while it was read")
    return arr
