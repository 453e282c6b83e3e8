"""CUDA sources, their compilation and kernel launches: the only module that reads .cu files.

The kernels live in the repository's ``kernels/`` folder (CUDA C: a header of
``__host__ __device__`` math and ``gpulogreg_kernels.cu``). The wheel ships
them as ``gpulogreg/_kernels`` (hatchling force-include); an editable install
has no such folder, so the loader falls back to ``kernels/`` next to the
package.

How a kernel gets to the device:

1. :func:`assemble_source` reads ``gpulogreg_kernels.cu`` and inlines the
   header in place of its ``#include`` line, with ``#line`` directives, so the
   compiler (and any error it reports) names the real file and line, and
   CuPy's on-disk cache key covers the header's text too.
2. :class:`CudaKernels` (one per device, see :func:`get_kernels`) compiles the
   source lazily with ``cupy.RawModule`` (NVRTC) on first use and keeps the
   functions it looked up.
3. :meth:`KernelLauncher.launch` checks and converts the arguments against the
   signature declared in :data:`KERNELS` (CuPy arrays on the kernels' device,
   of the right dtype and C-contiguous; scalars as NumPy scalars of the C type, so CuPy passes the
   right number of bytes) and launches ``GPULOGREG_BLOCK`` threads per block on
   a grid sized from the device's and the kernel's attributes
   (:func:`blocks_per_sm`). Kernels loop over rows with grid-stride loops, so
   the grid size never changes which rows are covered; it does fix the order
   of the partial sums. The grid depends on the kernel's register count,
   which NVRTC chooses: another NVRTC, CUDA or CuPy version can compile the
   same source to another count, so bitwise identical results hold only for
   the same GPU model and the same versions (they agree to rounding across).

Flush to zero: CuPy compiles with ``-ftz=true`` (appended after our
:data:`COMPILE_OPTIONS`, and NVRTC's last ``-ftz`` wins; checked in CuPy 14's
source and in the PTX, where the float32 instructions carry ``.ftz``). So in
the float32 entry points every single-precision result below 2^-126 is
stored as a zero of the same sign: ``sigmoid_f32`` returns exactly 0 for
z below about -87.3 (IEEE float32 would return subnormals down to about
-103.9), softmax probabilities below 2^-126 are 0, and float32 residuals
``s (p - y)`` of magnitude below 2^-126 are stored as 0 (their double values
still enter the loss and intercept partial sums). Subnormal float32 inputs
read as zero, which changes no result of these kernels. All double
arithmetic keeps IEEE subnormals. The host emulation in the tests models
this (``tests/_cuda_emulator.py``), and the GPU suite checks it.

Importing this module imports neither CuPy nor NumPy's GPU counterpart;
CuPy is imported when a :class:`CudaKernels` is built.
"""

from __future__ import annotations

import importlib.resources
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BLOCK_SIZE",
    "HEADER",
    "KERNELS",
    "MAIN_SOURCE",
    "WARP_SIZE",
    "CudaKernels",
    "DeviceLimits",
    "KernelLauncher",
    "assemble_source",
    "blocks_per_sm",
    "c_type",
    "entry_point",
    "get_kernels",
    "grid_size",
    "kernel_dir",
    "prepare_args",
    "suffix_dtypes",
]

#: Threads per block of every kernel; equals ``GPULOGREG_BLOCK`` in the .cu
#: (the block reductions depend on it; a test checks the two agree).
BLOCK_SIZE = 256
#: Threads per warp; equals ``GPULOGREG_WARP`` in the .cu. The CSR kernels'
#: ``lanes`` (threads per row) is a power of two up to it.
WARP_SIZE = 32
#: The kernels' source and the header it includes.
MAIN_SOURCE = "gpulogreg_kernels.cu"
HEADER = "gpulogreg_math.cuh"
#: Where the wheel puts ``kernels/`` inside the package.
PACKAGE_KERNEL_DIR = "_kernels"
#: Options passed to NVRTC. CuPy 14 adds ``-std=c++17`` when no standard is
#: given, then appends ``-ftz=true`` after ours (``cupy/cuda/compiler.py``,
#: ``_compile_with_cache_cuda``), then ``-arch`` and
#: ``--device-as-default-execution-space``. NVRTC takes the last ``-ftz``, so
#: flush to zero cannot be turned off from here (see "Flush to zero" above).
#: No fast-math: the stable exp/log1p forms rely on IEEE semantics otherwise.
COMPILE_OPTIONS: tuple[str, ...] = ()

#: C types of kernel parameters -> how Python values are passed. ``T`` is the
#: dtype of ``X`` (float for the _f32 entry point, double for _f64), ``I`` the
#: index type of a sparse ``X`` (int for _i32, long long for _i64).
_POINTER_DTYPES = {"double": np.dtype(np.float64), "int": np.dtype(np.int32)}
_SCALAR_TYPES: dict[str, type[np.generic]] = {
    "int": np.int32,
    "long long": np.int64,
    "double": np.float64,
}
_DTYPE_SUFFIX: dict[np.dtype[Any], str] = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
#: Index types of the sparse (indexed) kernels and their suffixes.
_INDEX_SUFFIX: dict[np.dtype[Any], str] = {np.dtype(np.int32): "i32", np.dtype(np.int64): "i64"}
_INDEX_SUFFIXES = tuple(_INDEX_SUFFIX.values())
#: C type of each suffix part (what ``T`` and ``I`` stand for in an entry point).
_C_TYPE_OF_SUFFIX = {"f32": "float", "f64": "double", "i32": "int", "i64": "long long"}


@dataclass(frozen=True)
class KernelSpec:
    """Signature of one kernel, shared by all its entry points.

    Attributes
    ----------
    params : tuple of (name, C type)
        In order. Pointer types are ``"const T*"``, ``"T*"``, ``"const I*"``,
        ``"const double*"``, ``"double*"``, ``"const int*"``; scalars ``"int"``,
        ``"long long"``, ``"double"``. ``T`` is the data type, ``I`` the index
        type of a sparse matrix (a kernel that names ``I`` is *indexed*).
    dtypes : tuple of str
        Data types that have entry points (``"f32"``, ``"f64"``).
    """

    params: tuple[tuple[str, str], ...]
    dtypes: tuple[str, ...] = ("f32", "f64")

    @property
    def indexed(self) -> bool:
        """Whether the kernel is templated on a sparse index type ``I`` too."""
        return any(re.search(r"\bI\b", ctype) for _, ctype in self.params)

    @property
    def suffixes(self) -> tuple[str, ...]:
        """Suffixes of the entry points: ``f32``, ``f64``; indexed: ``f32_i32`` ... ``f64_i64``."""
        if not self.indexed:
            return self.dtypes
        return tuple(f"{d}_{i}" for d in self.dtypes for i in _INDEX_SUFFIXES)


#: The arrays of a CSR matrix, the first parameters of every CSR kernel.
_CSR_PARAMS: tuple[tuple[str, str], ...] = (
    ("data", "const T*"),
    ("indices", "const I*"),
    ("indptr", "const I*"),
)

#: Every kernel of ``gpulogreg_kernels.cu`` and its signature (the Python side
#: of the contract; ``tests/test_kernels_host.py`` parses the .cu and checks it).
KERNELS: dict[str, KernelSpec] = {
    "logistic_loss_grad": KernelSpec(
        (
            ("xw", "const T*"),
            ("intercept", "const double*"),
            ("has_intercept", "int"),
            ("y", "const int*"),
            ("sample_weight", "const double*"),
            ("residual", "T*"),
            ("write_residual", "int"),
            ("partials", "double*"),
            ("n_rows", "long long"),
        )
    ),
    "softmax_loss_grad": KernelSpec(
        (
            ("xw", "const T*"),
            ("intercept", "const double*"),
            ("intercept_stride", "int"),
            ("has_intercept", "int"),
            ("y", "const int*"),
            ("sample_weight", "const double*"),
            ("residual", "T*"),
            ("write_residual", "int"),
            ("partials", "double*"),
            ("n_rows", "long long"),
            ("n_classes", "int"),
        )
    ),
    "logistic_newton_weights": KernelSpec(
        (
            ("xw", "const T*"),
            ("intercept", "const double*"),
            ("has_intercept", "int"),
            ("sample_weight", "const double*"),
            ("weights", "double*"),
            ("n_rows", "long long"),
        )
    ),
    "sigmoid": KernelSpec((("z", "const T*"), ("p", "T*"), ("n", "long long"))),
    "softmax": KernelSpec(
        (("z", "const T*"), ("p", "T*"), ("n_rows", "long long"), ("n_classes", "int"))
    ),
    "sum_partials": KernelSpec(
        (("partials", "const double*"), ("n_partials", "long long"), ("out", "double*")),
        dtypes=("f64",),
    ),
    # -- CSR kernels (a group of ``lanes`` threads per row; see the .cu) --------------
    "csr_logistic_loss_grad": KernelSpec(
        (
            *_CSR_PARAMS,
            ("coef", "const double*"),
            ("intercept", "const double*"),
            ("has_intercept", "int"),
            ("y", "const int*"),
            ("sample_weight", "const double*"),
            ("residual", "double*"),
            ("partials", "double*"),
            ("n_rows", "long long"),
            ("lanes", "int"),
        )
    ),
    "csr_softmax_loss_grad": KernelSpec(
        (
            *_CSR_PARAMS,
            ("coef", "const double*"),
            ("coef_stride", "long long"),
            ("intercept", "const double*"),
            ("has_intercept", "int"),
            ("y", "const int*"),
            ("sample_weight", "const double*"),
            ("residual", "double*"),
            ("partials", "double*"),
            ("n_rows", "long long"),
            ("n_classes", "int"),
            ("lanes", "int"),
        )
    ),
    "csr_matvecs": KernelSpec(
        (
            *_CSR_PARAMS,
            ("dense", "const double*"),
            ("class_stride", "long long"),
            ("feature_stride", "long long"),
            ("intercept", "const double*"),
            ("has_intercept", "int"),
            ("square", "int"),
            ("out", "double*"),
            ("out_row_stride", "long long"),
            ("out_class_stride", "long long"),
            ("n_rows", "long long"),
            ("n_outputs", "int"),
            ("lanes", "int"),
        )
    ),
    "csr_scatter_add": KernelSpec(
        (
            *_CSR_PARAMS,
            ("R", "const double*"),
            ("square", "int"),
            ("out", "double*"),
            ("out_class_stride", "long long"),
            ("n_rows", "long long"),
            ("n_outputs", "int"),
            ("lanes", "int"),
        )
    ),
    "segment_sums": KernelSpec(
        (
            ("values", "const double*"),
            ("segments", "const I*"),
            ("out", "double*"),
            ("out_class_stride", "long long"),
            ("n_segments", "long long"),
            ("n_outputs", "int"),
        ),
        dtypes=("f64",),
    ),
}


# -- sources ------------------------------------------------------------------
def _repository_kernel_dir() -> Path:
    """``kernels/`` of a source checkout (editable installs): ``<repo>/kernels``."""
    return Path(__file__).resolve().parents[2] / "kernels"


def kernel_dir(candidates: Sequence[Any] | None = None) -> Any:
    """The folder holding the CUDA sources.

    Parameters
    ----------
    candidates : sequence of path-like or Traversable, optional
        Folders to try in order. Default: the package's ``_kernels`` (a wheel
        install, through :mod:`importlib.resources`), then the repository's
        ``kernels/`` (an editable install or a checkout).

    Returns
    -------
    pathlib.Path or importlib.resources.abc.Traversable
        The first candidate that holds :data:`MAIN_SOURCE`.

    Raises
    ------
    FileNotFoundError
        None of them does (a broken install): the message lists where it looked.
    """
    if candidates is None:
        candidates = [
            importlib.resources.files("gpulogreg") / PACKAGE_KERNEL_DIR,
            _repository_kernel_dir(),
        ]
    for folder in candidates:
        if (folder / MAIN_SOURCE).is_file():
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"the CUDA sources ({MAIN_SOURCE}) were not found; looked in: {looked}. "
        "Reinstall gpulogreg (the wheel ships them as gpulogreg/_kernels)."
    )


def _display_path(folder: Any, name: str) -> str:
    """The file's path as the compiler should report it (forward slashes, quoted safely)."""
    return str(folder / name).replace("\\", "/").replace('"', "'")


#: The header's include line in the main source (replaced by the header's text).
_INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"' + re.escape(HEADER) + r'"\s*$')


def assemble_source(folder: Any = None) -> str:
    """The main .cu with the header inlined, as one translation unit for NVRTC.

    ``#line`` directives keep every line's origin: the source starts with
    ``#line 1 "<path>/gpulogreg_kernels.cu"``, the header's text follows
    ``#line 1 "<path>/gpulogreg_math.cuh"``, and the line after the include
    resumes with ``#line N+1 "<path>/gpulogreg_kernels.cu"``. A compiler error
    therefore names the real file and line. Inlining (rather than ``-I``) also
    makes CuPy's cache key, a hash of the source text, cover the header.
    """
    if folder is None:
        folder = kernel_dir()
    main_path = _display_path(folder, MAIN_SOURCE)
    header_path = _display_path(folder, HEADER)
    header = (folder / HEADER).read_text(encoding="utf-8")
    lines = (folder / MAIN_SOURCE).read_text(encoding="utf-8").splitlines()
    out = [f'#line 1 "{main_path}"']
    included = False
    for number, line in enumerate(lines, start=1):
        if not included and _INCLUDE_RE.match(line):
            out.append(f'#line 1 "{header_path}"')
            out.extend(header.splitlines())
            out.append(f'#line {number + 1} "{main_path}"')
            included = True
        else:
            out.append(line)
    if not included:
        raise ValueError(f'{MAIN_SOURCE} does not #include "{HEADER}"')
    return "\n".join(out) + "\n"


# -- entry points and arguments -------------------------------------------------
def c_type(ctype: str, suffix: str) -> str:
    """A declared parameter type with ``T`` (and ``I``) replaced for the entry point ``suffix``.

    ``c_type("const I*", "f32_i64")`` is ``"const long long*"``.
    """
    parts = suffix.split("_")
    out = re.sub(r"\bT\b", _C_TYPE_OF_SUFFIX[parts[0]], ctype)
    if len(parts) > 1:
        out = re.sub(r"\bI\b", _C_TYPE_OF_SUFFIX[parts[1]], out)
    return out


def suffix_dtypes(suffix: str) -> tuple[np.dtype[Any], np.dtype[Any] | None]:
    """``(data dtype, index dtype or None)`` of an entry-point suffix (``"f32_i64"``...)."""
    by_suffix: dict[str, np.dtype[Any]] = {}
    for table in (_DTYPE_SUFFIX, _INDEX_SUFFIX):
        by_suffix.update({name: dtype for dtype, name in table.items()})
    parts = suffix.split("_")
    return by_suffix[parts[0]], (by_suffix[parts[1]] if len(parts) > 1 else None)


def entry_point(name: str, dtype: Any, index_dtype: Any = None) -> str:
    """Name of the extern "C" function of kernel ``name`` for data of ``dtype``.

    ``float32`` -> ``gpulogreg_<name>_f32``, ``float64`` -> ``..._f64``; kernels
    with a single entry point (``sum_partials``) accept only that dtype. An
    indexed (sparse) kernel also takes the index dtype of its matrix:
    ``gpulogreg_<name>_f32_i32`` ... ``_f64_i64``.
    """
    if name not in KERNELS:
        raise KeyError(f"unknown kernel {name!r}; known: {sorted(KERNELS)}")
    spec = KERNELS[name]
    suffix = _DTYPE_SUFFIX.get(np.dtype(dtype))
    if suffix is None:
        raise TypeError(f"the CUDA kernels take float32 or float64 data, got {np.dtype(dtype)}")
    if suffix not in spec.dtypes:
        raise TypeError(f"kernel {name!r} has no {np.dtype(dtype)} entry point")
    if spec.indexed:
        if index_dtype is None:
            raise TypeError(f"kernel {name!r} needs the index dtype of its sparse matrix")
        index_suffix = _INDEX_SUFFIX.get(np.dtype(index_dtype))
        if index_suffix is None:
            raise TypeError(
                f"the sparse kernels take int32 or int64 indices, got {np.dtype(index_dtype)}"
            )
        suffix = f"{suffix}_{index_suffix}"
    elif index_dtype is not None:
        raise TypeError(f"kernel {name!r} takes no index dtype (it is not a sparse kernel)")
    return f"gpulogreg_{name}_{suffix}"


def prepare_args(
    name: str,
    dtype: Any,
    args: Sequence[Any],
    *,
    index_dtype: Any = None,
    check_array: Callable[[str, Any], None] | None = None,
) -> tuple[Any, ...]:
    """Check and convert launch arguments against the kernel's declared signature.

    Arrays must have the parameter's dtype (``T`` = ``dtype``, ``I`` =
    ``index_dtype``, ``double`` = float64, ``int`` = int32) and be
    C-contiguous (a kernel reads them as flat memory). Scalars become NumPy
    scalars of the C type, so CuPy passes exactly 4 or 8 bytes; integers are
    range-checked.

    Parameters
    ----------
    name : str
        A key of :data:`KERNELS`.
    dtype : dtype
        The data type ``T`` (selects the entry point).
    args : sequence
        One value per declared parameter, in order.
    index_dtype : dtype, optional
        The index type ``I`` of an indexed (sparse) kernel.
    check_array : callable ``(where, value) -> None``, optional
        Called first for every pointer argument, with a description of the
        kernel and parameter; raises when the launcher cannot take the array
        (:class:`CudaKernels` accepts only CuPy arrays on its own device).

    Raises
    ------
    TypeError, ValueError
        Naming the kernel and parameter.
    """
    spec = KERNELS[name]
    expected_of = dict(_POINTER_DTYPES, T=np.dtype(dtype))
    if index_dtype is not None:
        expected_of["I"] = np.dtype(index_dtype)
    if len(args) != len(spec.params):
        raise TypeError(f"kernel {name!r} takes {len(spec.params)} arguments, got {len(args)}")
    out: list[Any] = []
    for value, (param, ctype) in zip(args, spec.params, strict=True):
        where = f"kernel {name!r}, parameter {param!r} ({ctype})"
        if ctype.endswith("*"):
            base = ctype.removeprefix("const ").removesuffix("*").strip()
            expected = expected_of.get(base)
            if expected is None:
                raise TypeError(f"{where}: the kernel is indexed; pass index_dtype")
            if not (hasattr(value, "dtype") and hasattr(value, "flags")):
                raise TypeError(f"{where}: expected an array, got {type(value).__name__}")
            if check_array is not None:
                check_array(where, value)
            if np.dtype(value.dtype) != expected:
                raise TypeError(f"{where}: expected dtype {expected}, got {value.dtype}")
            if not value.flags.c_contiguous:
                raise ValueError(f"{where}: the array must be C-contiguous")
            out.append(value)
            continue
        scalar_type = _SCALAR_TYPES[ctype]
        if scalar_type is np.float64:
            out.append(np.float64(value))
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{where}: expected an integer, got {type(value).__name__}")
        info = np.iinfo(np.dtype(scalar_type))
        if not info.min <= int(value) <= info.max:
            raise ValueError(f"{where}: {value} does not fit in {ctype}")
        out.append(scalar_type(value))
    return tuple(out)


# -- launch sizes -----------------------------------------------------------------
@dataclass(frozen=True)
class DeviceLimits:
    """The device attributes that size a launch.

    Attributes
    ----------
    multiprocessors : int
    max_threads_per_sm : int
    max_blocks_per_sm : int
    registers_per_sm : int
    shared_memory_per_sm : int
        Bytes.
    """

    multiprocessors: int
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32
    registers_per_sm: int = 65536
    shared_memory_per_sm: int = 65536


def blocks_per_sm(
    limits: DeviceLimits,
    *,
    registers_per_thread: int = 0,
    shared_bytes_per_block: int = 0,
    block: int = BLOCK_SIZE,
) -> int:
    """Resident blocks per multiprocessor: the tightest of threads, blocks, registers, shared.

    A simple occupancy estimate (registers are counted per thread, without the
    allocation granularity): good enough to size a grid-stride launch, where
    too many blocks only adds a second wave and too few leaves SMs idle.
    Always at least 1.
    """
    bounds = [limits.max_threads_per_sm // block, limits.max_blocks_per_sm]
    if registers_per_thread > 0:
        bounds.append(limits.registers_per_sm // (registers_per_thread * block))
    if shared_bytes_per_block > 0:
        bounds.append(limits.shared_memory_per_sm // shared_bytes_per_block)
    return max(1, min(bounds))


def grid_size(
    n_items: int, *, multiprocessors: int, blocks_per_sm: int, block: int = BLOCK_SIZE
) -> int:
    """Blocks for ``n_items`` rows: one full wave of resident blocks, fewer when the data is small.

    ``min(ceil(n_items / block), multiprocessors * blocks_per_sm)``, at least 1.
    """
    needed = math.ceil(max(int(n_items), 1) / block)
    return max(1, min(needed, max(1, multiprocessors) * max(1, blocks_per_sm)))


class KernelLauncher:
    """Launch interface shared by the CUDA implementation and the tests' host emulator.

    Subclasses set :attr:`limits` and implement :meth:`_kernel_attributes`
    and :meth:`_call`; they may restrict the arrays they take in
    :meth:`_check_array` (the CUDA launcher takes only device arrays, the
    tests' host emulator NumPy arrays).
    """

    limits: DeviceLimits
    block: int = BLOCK_SIZE

    def _kernel_attributes(self, entry: str) -> tuple[int, int]:
        """``(registers per thread, static shared bytes per block)`` of an entry point."""
        raise NotImplementedError

    def _call(self, entry: str, grid: int, args: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def _check_array(self, where: str, value: Any) -> None:
        """Raise when this launcher cannot pass ``value`` (``where`` names the parameter)."""

    def grid(self, name: str, dtype: Any, n_items: int, index_dtype: Any = None) -> int:
        """Grid size for ``n_items`` threads' work of kernel ``name`` (see :func:`grid_size`).

        ``n_items`` is the number of rows of a thread-per-row kernel; a CSR
        kernel with ``lanes`` threads per row needs ``n_rows * lanes``.
        """
        registers, shared = self._kernel_attributes(entry_point(name, dtype, index_dtype))
        per_sm = blocks_per_sm(
            self.limits,
            registers_per_thread=registers,
            shared_bytes_per_block=shared,
            block=self.block,
        )
        return grid_size(
            n_items,
            multiprocessors=self.limits.multiprocessors,
            blocks_per_sm=per_sm,
            block=self.block,
        )

    def launch(
        self, name: str, dtype: Any, grid: int, args: Sequence[Any], index_dtype: Any = None
    ) -> None:
        """Launch ``gpulogreg_<name>_<f32|f64>[_<i32|i64>]`` on ``grid`` blocks of BLOCK_SIZE."""
        entry = entry_point(name, dtype, index_dtype)
        grid = int(grid)
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        prepared = prepare_args(
            name, dtype, args, index_dtype=index_dtype, check_array=self._check_array
        )
        self._call(entry, grid, prepared)


# -- CUDA -------------------------------------------------------------------------------
class CudaKernels(KernelLauncher):
    """The kernels compiled for one CUDA device (lazily, on first launch).

    Parameters
    ----------
    device_id : int
        CUDA device ordinal.
    source : str, optional
        Translation unit to compile; default :func:`assemble_source`.
    """

    def __init__(self, device_id: int, source: str | None = None) -> None:
        import cupy

        self._cupy = cupy
        self.device_id = int(device_id)
        runtime = cupy.cuda.runtime

        def attribute(name: str) -> int:
            return int(runtime.deviceGetAttribute(getattr(runtime, name), self.device_id))

        self.limits = DeviceLimits(
            multiprocessors=attribute("cudaDevAttrMultiProcessorCount"),
            max_threads_per_sm=attribute("cudaDevAttrMaxThreadsPerMultiProcessor"),
            max_blocks_per_sm=attribute("cudaDevAttrMaxBlocksPerMultiprocessor"),
            registers_per_sm=attribute("cudaDevAttrMaxRegistersPerMultiprocessor"),
            shared_memory_per_sm=attribute("cudaDevAttrMaxSharedMemoryPerMultiprocessor"),
        )
        self._source = source if source is not None else assemble_source()
        # Compilation happens at the first get_function (CuPy caches the binary
        # on disk, keyed by the source text and options).
        self._module = cupy.RawModule(code=self._source, options=COMPILE_OPTIONS)
        self._functions: dict[str, Any] = {}
        self._attributes: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def function(self, entry: str) -> Any:
        """The ``cupy.RawKernel`` of an entry point (compiles the module on first use)."""
        function = self._functions.get(entry)
        if function is None:
            with self._lock, self._cupy.cuda.Device(self.device_id):
                function = self._module.get_function(entry)
                self._functions[entry] = function
        return function

    def _kernel_attributes(self, entry: str) -> tuple[int, int]:
        attributes = self._attributes.get(entry)
        if attributes is None:
            function = self.function(entry)
            with self._cupy.cuda.Device(self.device_id):
                attributes = (int(function.num_regs), int(function.shared_size_bytes))
            self._attributes[entry] = attributes
        return attributes

    def _check_array(self, where: str, value: Any) -> None:
        """Only CuPy arrays on this device: CuPy's launcher would pass anything else wrongly.

        CuPy 14 passes a NumPy array of size 1 *by value* (its bytes, not a
        pointer: the kernel would read garbage) and refuses larger ones with
        an unhelpful error; an array on another device is an invalid address.
        """
        if not isinstance(value, self._cupy.ndarray):
            kind = f"{type(value).__module__}.{type(value).__name__}"
            raise TypeError(
                f"{where}: expected a CuPy array (device memory), got {kind}; "
                "move host data to the GPU with cupy.asarray first"
            )
        device_id = int(value.device.id)
        if device_id != self.device_id:
            raise ValueError(
                f"{where}: the array is on GPU {device_id}, the kernels run on GPU {self.device_id}"
            )

    def _call(self, entry: str, grid: int, args: tuple[Any, ...]) -> None:
        function = self.function(entry)
        with self._cupy.cuda.Device(self.device_id):
            function((grid,), (self.block,), args)


_KERNELS_BY_DEVICE: dict[int, CudaKernels] = {}
_KERNELS_LOCK = threading.Lock()


def get_kernels(device_id: int | None = None) -> CudaKernels:
    """The compiled kernels of a device (the current one by default), cached per device."""
    if device_id is None:
        import cupy

        device_id = int(cupy.cuda.Device().id)
    with _KERNELS_LOCK:
        kernels = _KERNELS_BY_DEVICE.get(device_id)
        if kernels is None:
            kernels = CudaKernels(device_id)
            _KERNELS_BY_DEVICE[device_id] = kernels
    return kernels
