"""``python -m gpulogreg.accel [-v] [--counts FILE] (script.py | -m module) [args...]``.

Runs a program with :func:`gpulogreg.accel.patch_sklearn` in effect, as
``__main__``, with ``sys.argv`` set as if it had been started directly.
``-v`` logs each fit that falls back to scikit-learn and, at exit, the fit
counts; ``--counts FILE`` writes them to ``FILE`` as JSON at exit.
"""

from __future__ import annotations

import atexit
import json
import logging
import runpy
import sys

from gpulogreg.accel import fit_counts, patch_sklearn

USAGE = "usage: python -m gpulogreg.accel [-v] [--counts FILE] (script.py | -m module) [args...]"


def _write_counts(path: str) -> None:
    with open(path, "w") as f:
        json.dump(fit_counts(), f)


def main(argv: list[str]) -> int:
    """Patch scikit-learn, then run the script or module that ``argv`` names."""
    verbose, counts = False, None
    while argv and argv[0] in ("-v", "--counts"):
        if argv[0] == "-v":
            verbose, argv = True, argv[1:]
        elif len(argv) > 1:
            counts, argv = argv[1], argv[2:]
        else:
            argv = []
    if not argv or (argv[0] == "-m" and len(argv) < 2):
        print(USAGE, file=sys.stderr)
        return 2
    if counts is not None:
        atexit.register(_write_counts, counts)
    if verbose:
        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("gpulogreg.accel").setLevel(logging.INFO)
        atexit.register(lambda: print(f"gpulogreg.accel: fits {fit_counts()}", file=sys.stderr))
    patch_sklearn()
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
