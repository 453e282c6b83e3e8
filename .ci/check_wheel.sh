#!/usr/bin/env bash
# Build the wheel and check that it ships the CUDA sources where the loader
# finds them: every file of kernels/ must be in the wheel as
# gpulogreg/_kernels/<name>, byte for byte, and gpulogreg.backends._cuda,
# imported from the installed wheel (not the checkout), must read them from
# there and assemble the source.
#
# Usage: .ci/check_wheel.sh        (PYTHON=python3 to choose the interpreter)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="$(command -v "${PYTHON:-python}")" || { echo "check_wheel: python not found" >&2; exit 1; }
[[ "$PYTHON" == /* ]] || PYTHON="$PWD/$PYTHON"  # absolute, without resolving a venv's symlink
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Without build isolation when hatchling is already installed (no download).
if "$PYTHON" -c "import hatchling" >/dev/null 2>&1; then
    "$PYTHON" -m build --wheel --no-isolation --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
        || { cat "$WORK/build.log"; exit 1; }
else
    "$PYTHON" -m build --wheel --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
        || { cat "$WORK/build.log"; exit 1; }
fi
WHEEL="$(ls "$WORK"/dist/*.whl)"
echo "built $(basename "$WHEEL")"

"$PYTHON" - "$WHEEL" <<'PY'
import sys
import zipfile
from pathlib import Path

wheel = zipfile.ZipFile(sys.argv[1])
names = set(wheel.namelist())
sources = sorted(p for p in Path("kernels").iterdir() if p.is_file())
if not sources:
    sys.exit("check_wheel: kernels/ is empty")
missing = []
for path in sources:
    inside = f"gpulogreg/_kernels/{path.name}"
    if inside not in names:
        missing.append(inside)
    elif wheel.read(inside) != path.read_bytes():
        sys.exit(f"check_wheel: {inside} differs from {path}")
if missing:
    sys.exit(f"check_wheel: missing from the wheel: {missing}")
print(f"wheel ships {len(sources)} kernel source(s):", ", ".join(p.name for p in sources))
PY

# Install the wheel alone into a private folder and load the kernels from it.
"$PYTHON" -m pip install --quiet --no-deps --no-compile --target "$WORK/site" "$WHEEL"
(
    cd "$WORK"
    PYTHONPATH="$WORK/site" "$PYTHON" - <<'PY'
import gpulogreg
from pathlib import Path
from gpulogreg.backends import _cuda

folder = Path(str(_cuda.kernel_dir()))
package = Path(gpulogreg.__file__).parent
assert folder == package / "_kernels", f"loader used {folder}, not the installed package"
source = _cuda.assemble_source()
assert f'#line 1 "{folder.as_posix()}/{_cuda.HEADER}"' in source
for name, spec in _cuda.KERNELS.items():
    for suffix in spec.suffixes:
        assert f"gpulogreg_{name}_{suffix}(" in source, name
print(f"installed wheel: the loader reads {folder} and assembles {len(source)} characters")
PY
)
echo "check_wheel: OK"
