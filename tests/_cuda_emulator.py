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
anyway. FTZ also reads subnormal float32 inputs as zero (the conversion to
double is ``cvt.ftz.f64.f32`` in the PTX): :class:`EmulatedKernels` passes a
float32 input that holds subnormals as a flushed copy. For the dense kernels
that changes no result (a decision value of 1e-40 and of 0 give the same
loss, residual and weights in double); for the CSR kernels a subnormal
stored value of X contributes 0 to its row's products. double arithmetic is
never flushed.
"""

from __future__ import annotations

import ctypes
import hashlib
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
                f"{_cuda.c_type(ct, suffix)} a{i}" for i, (_, ct) in enumerate(spec.params)
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
        # Float32 entry point -> positions of the float32 arrays it writes ("T*")
        # and reads ("const T*").
        self._float32_outputs: dict[str, list[int]] = {}
        self._float32_inputs: dict[str, list[int]] = {}
        for name, spec in _cuda.KERNELS.items():
            for suffix in spec.suffixes:
                if suffix.startswith("f32"):
                    entry = f"gpulogreg_{name}_{suffix}"
                    kinds = [ct for _, ct in spec.params]
                    self._float32_outputs[entry] = [i for i, ct in enumerate(kinds) if ct == "T*"]
                    self._float32_inputs[entry] = [
                        i for i, ct in enumerate(kinds) if ct == "const T*"
                    ]

    def _kernel_attributes(self, entry: str) -> tuple[int, int]:
        # Plausible figures (ptxas reports 14-64 registers and 0 or 2048 bytes).
        return 32, 2048

    def _call(self, entry: str, grid: int, args: tuple[Any, ...]) -> None:
        if self.flush_float32:
            args = self._flush_inputs(entry, args)
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

    def _flush_inputs(self, entry: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The arguments with float32 inputs that hold subnormals replaced by flushed copies.

        The device reads a subnormal float32 as zero (``cvt.ftz.f64.f32``); the
        caller's array is left as it is (the kernels take their inputs as const).
        """
        out = list(args)
        tiny = np.finfo(np.float32).tiny
        for position in self._float32_inputs.get(entry, ()):
            value = np.asarray(out[position])
            if ((value != 0) & (np.abs(value) < tiny)).any():
                out[position] = flush_to_zero(value.copy())
        return tuple(out)
