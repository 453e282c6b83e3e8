"""Build and drive the host emulation of the CUDA kernels (see cuda_host_emulation.hpp).

:func:`build_emulator` compiles ``kernels/gpulogreg_kernels.cu`` for the host
with a C++20 compiler, together with one generated ``extern "C"`` wrapper per
entry point whose parameter types come from ``gpulogreg.backends._cuda.KERNELS``
(so a signature that disagrees with the .cu does not compile).
:class:`EmulatedKernels` implements the same launcher interface as
``_cuda.CudaKernels``, on NumPy arrays, so the CuPy backend's own code runs
unchanged on the CPU.

Flush to zero. CuPy compiles every kernel with ``-ftz=true`` (it appends the
option after ours; see ``gpulogreg.backends._cuda``), so on the device every
single-precision instruction of the float32 entry points writes a subnormal
result as a zero of the same sign: ``sigmoid_f32`` is exactly 0 below
z = -87.3 (where IEEE float32 has subnormals down to z = -103.9), softmax
terms below 2^-126 vanish, and a float32 residual whose magnitude is below
2^-126 is stored as 0 (the double-to-float conversion flushes too). The
host compiler keeps IEEE subnormals, so :class:`EmulatedKernels` models FTZ
on the outputs: after a float32 entry point runs, the subnormals of every
float32 array it writes are set to signed zeros (:func:`flush_to_zero`).
That is exact for these kernels: each float32 output is the result of one
final float32 operation or conversion (``e * q``, ``term * inv``,
``(float)r``), which FTZ flushes, and a subnormal intermediate only ever
meets a number >= 1 in a sum (``1 + e``, ``sumexp``), where it is lost
anyway. FTZ also reads subnormal float32 inputs as zero; in these kernels
that changes no result (a decision value of 1e-40 and of 0 give the same
loss, residual and weights in double). double arithmetic is never flushed.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from gpulogreg.backends import _cuda

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
KERNEL_DIR = REPO / "kernels"
EMULATION_HEADER = TESTS_DIR / "cuda_host_emulation.hpp"

_C_TYPE_OF_SUFFIX = {"f32": "float", "f64": "double"}


def flush_to_zero(a: np.ndarray) -> np.ndarray:
    """``a`` with its float32 subnormals replaced by zeros of the same sign, in place.

    The device's float32 results under ``-ftz=true``; float64 arrays are
    returned unchanged (double arithmetic is never flushed).
    """
    if a.dtype == np.float32:
        plain = np.asarray(a)  # no subclass hooks: this models the device, it is not device work
        tiny = np.finfo(np.float32).tiny  # 2^-126, the smallest normal float32
        subnormal = (plain != 0) & (np.abs(plain) < tiny)
        plain[subnormal] = np.copysign(np.float32(0), plain[subnormal])
    return a


def find_cxx() -> str | None:
    """A host C++ compiler, or None."""
    for name in ("g++", "c++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def c_type(ctype: str, suffix: str) -> str:
    """Substitute the data type for ``T`` in a declared parameter type."""
    return re.sub(r"\bT\b", _C_TYPE_OF_SUFFIX[suffix], ctype)


def wrapper_source() -> str:
    """One ``emu_<entry>(grid, block, args...)`` per entry point of every kernel."""
    lines = [
        '#include "cuda_host_emulation.hpp"',
        '#include "gpulogreg_kernels.cu"',
        "",
    ]
    for name, spec in _cuda.KERNELS.items():
        for suffix in spec.suffixes:
            entry = f"gpulogreg_{name}_{suffix}"
            params = ", ".join(
                f"{c_type(ct, suffix)} a{i}" for i, (_, ct) in enumerate(spec.params)
            )
            names = ", ".join(f"a{i}" for i in range(len(spec.params)))
            lines += [
                f'extern "C" void emu_{entry}(unsigned grid, unsigned block, {params}) {{',
                f"  emu::launch({entry}, grid, block, {names});",
                "}",
                "",
            ]
    return "\n".join(lines)


def build_emulator(out_dir: Path) -> Path:
    """Compile the emulated kernels into a shared library (cached by source hash)."""
    cxx = find_cxx()
    if cxx is None:
        raise RuntimeError("no C++ compiler found")
    source = wrapper_source()
    digest = hashlib.sha256()
    for path in (EMULATION_HEADER, *sorted(KERNEL_DIR.glob("*"))):
        digest.update(path.read_bytes())
    digest.update(source.encode())
    lib = out_dir / f"gpulogreg_emu_{digest.hexdigest()[:16]}.so"
    if lib.exists():
        return lib
    cpp = out_dir / "gpulogreg_emu.cpp"
    cpp.write_text(source)
    cmd = [
        cxx,
        "-std=c++20",
        "-O2",
        "-U_FORTIFY_SOURCE",  # its longjmp check rejects jumps between fiber stacks
        "-shared",
        "-fPIC",
        "-Wall",
        "-Wextra",
        "-Werror",
        f"-I{TESTS_DIR}",
        f"-I{KERNEL_DIR}",
        str(cpp),
        "-o",
        str(lib),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"building the kernel emulator failed:\n{' '.join(cmd)}\n{result.stderr}"
        )
    return lib


class EmulatedKernels(_cuda.KernelLauncher):
    """The kernels run on the host on NumPy arrays, behind the CUDA launcher's interface.

    Parameters
    ----------
    lib_path : Path
        Library from :func:`build_emulator`.
    limits : DeviceLimits
        Pretend device: the default (2 SMs of 512 threads) gives grids of a few
        blocks, so grid-stride loops wrap on a few thousand rows.
    flush_float32 : bool
        Model the device's flush to zero of float32 results (the default; see
        the module docstring). False gives the host's IEEE subnormals.

    Attributes
    ----------
    calls : list of (entry point, grid)
        Every launch, in order.
    """

    def __init__(
        self,
        lib_path: Path,
        limits: _cuda.DeviceLimits | None = None,
        *,
        flush_float32: bool = True,
    ) -> None:
        self._lib = ctypes.CDLL(str(lib_path))
        self.limits = limits or _cuda.DeviceLimits(multiprocessors=2, max_threads_per_sm=512)
        self.flush_float32 = flush_float32
        self.calls: list[tuple[str, int]] = []
        # Float32 entry point -> positions of the float32 arrays it writes ("T*").
        self._float32_outputs = {
            f"gpulogreg_{name}_f32": [i for i, (_, ct) in enumerate(spec.params) if ct == "T*"]
            for name, spec in _cuda.KERNELS.items()
            if "f32" in spec.suffixes
        }

    def _kernel_attributes(self, entry: str) -> tuple[int, int]:
        # Plausible figures (ptxas reports 14-64 registers and 0 or 2048 bytes).
        return 32, 2048

    def _call(self, entry: str, grid: int, args: tuple[Any, ...]) -> None:
        c_args: list[Any] = [ctypes.c_uint(grid), ctypes.c_uint(self.block)]
        for value in args:
            if isinstance(value, np.ndarray):
                c_args.append(ctypes.c_void_p(value.ctypes.data))
            elif isinstance(value, np.int32):
                c_args.append(ctypes.c_int(int(value)))
            elif isinstance(value, np.int64):
                c_args.append(ctypes.c_longlong(int(value)))
            elif isinstance(value, np.float64):
                c_args.append(ctypes.c_double(float(value)))
            else:  # prepare_args never lets anything else through
                raise TypeError(f"unexpected launch argument {value!r}")
        self.calls.append((entry, grid))
        getattr(self._lib, f"emu_{entry}")(*c_args)
        if self.flush_float32:
            for position in self._float32_outputs.get(entry, ()):
                flush_to_zero(args[position])
