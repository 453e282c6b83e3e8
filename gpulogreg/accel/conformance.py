"""scikit-learn's own ``test_logistic.py`` against the drop-in: the pass count and the failures.

``python -m gpulogreg.accel.conformance`` runs the installed scikit-learn's
``sklearn/linear_model/tests/test_logistic.py`` in a subprocess under
``python -m gpulogreg.accel`` (so ``LogisticRegression`` is the drop-in),
leaving out the tests of ``LogisticRegressionCV`` and of the path functions
(:data:`SELECTION`), whose estimators keep scikit-learn's solvers. It prints
the counts, the fits served by gpulogreg and by scikit-learn, and each
failing test; ``--expected FILE`` compares the failures with a list
(``test_id  # reason`` per line) and exits non-zero when they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SELECTION", "Conformance", "expected_failures", "run"]

#: The ``-k`` selection: everything but the CV estimator's and the path functions' tests.
SELECTION = "not cv and not path"


@dataclass
class Conformance:
    """Outcome of one run: test id -> ``passed``/``failed``/``skipped``, and the fit counts."""

    outcomes: dict[str, str] = field(default_factory=dict)
    fits: dict[str, int] = field(default_factory=dict)

    def ids(self, outcome: str) -> list[str]:
        """The test ids with ``outcome``, sorted."""
        return sorted(k for k, v in self.outcomes.items() if v == outcome)


def test_file() -> Path:
    """The installed scikit-learn's ``test_logistic.py``."""
    import sklearn

    return Path(sklearn.__file__).parent / "linear_model" / "tests" / "test_logistic.py"


def run(selection: str = SELECTION, timeout: float = 1800.0) -> Conformance:
    """Run the tests under the patch in a fresh process and collect every outcome."""
    with tempfile.TemporaryDirectory() as tmp:
        junit, counts = os.path.join(tmp, "junit.xml"), os.path.join(tmp, "counts.json")
        command = [
            sys.executable,
            *("-m", "gpulogreg.accel", "--counts", counts, "-m", "pytest"),
            str(test_file()),
            *("-k", selection, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tmp)
        if not os.path.exists(junit):
            raise RuntimeError(f"the conformance run wrote no report:\n{done.stdout}{done.stderr}")
        result = Conformance()
        for case in ET.parse(junit).getroot().iter("testcase"):
            kinds = {child.tag for child in case}
            result.outcomes[case.attrib["name"]] = (
                "failed"
                if kinds & {"failure", "error"}
                else "skipped"
                if "skipped" in kinds
                else "passed"
            )
        with open(counts) as f:
            result.fits = json.load(f)
    return result


def expected_failures(path: str | Path) -> dict[str, str]:
    """``test id -> reason`` from a list file (``test_id  # reason``; ``#`` lines are comments)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            test_id, _, reason = line.partition("#")
            out[test_id.strip()] = reason.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the counts and failures; with ``--expected``, exit 1 when the failures differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expected", help="the list of failures with their reasons")
    args = parser.parse_args(argv)
    result = run()
    passed, failed = result.ids("passed"), result.ids("failed")
    print(
        f"scikit-learn test_logistic.py ({SELECTION!r}) through gpulogreg.accel: "
        f"{len(passed)} passed, {len(failed)} failed, {len(result.ids('skipped'))} skipped; "
        f"fits served by gpulogreg {result.fits.get('gpulogreg', 0)}, "
        f"by scikit-learn {result.fits.get('scikit-learn', 0)}"
    )
    for test_id in failed:
        print(f"  failed: {test_id}")
    if args.expected is None:
        return 0
    expected = expected_failures(args.expected)
    new, fixed = sorted(set(failed) - set(expected)), sorted(set(expected) - set(failed))
    for test_id in new:
        print(f"  NEW FAILURE (not in {args.expected}): {test_id}")
    for test_id in fixed:
        print(f"  passes now, remove it from {args.expected}: {test_id}")
    return 1 if new or fixed else 0


if __name__ == "__main__":
    raise SystemExit(main())
