"""The svmlight/libsvm reader: CSR out, checked against scikit-learn, errors by line."""

from __future__ import annotations

import bz2
import gzip
import io as std_io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gpulogreg import _svmlight
from gpulogreg.io import (
    DataError,
    detect_format,
    iter_batches,
    read_data,
    read_svmlight,
    svmlight_survey,
)

pytest.importorskip("pyarrow")
sp = pytest.importorskip("scipy.sparse")

SVMLIGHT = """\
# a comment line
1 qid:1 1:0.5 3:-2.25e1 # trailing comment
-1 2:1.5

+1 1:1 2:2 3:3
-1 3:1e-3
"""


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", std_io.TextIOWrapper(std_io.BytesIO(data)))


def _assert_canonical(X: object) -> None:
    """A canonical scipy CSR matrix: sorted rows without repeats, int32 indices here."""
    assert isinstance(X, sp.csr_matrix)
    assert X.indices.dtype == X.indptr.dtype == np.int32
    fresh = sp.csr_matrix((X.data, X.indices, X.indptr), shape=X.shape)
    assert fresh.has_canonical_format  # found from the arrays, not the reader's flag


def _random_file(path: Path, rng: np.random.Generator, *, zero_based: bool) -> None:
    """A file in scikit-learn's own writing (``dump_svmlight_file``), with qids and a comment."""
    datasets = pytest.importorskip("sklearn.datasets")
    X = rng.normal(size=(300, 40))
    X[rng.random(X.shape) < 0.8] = 0.0
    X[5] = 0.0  # a row without pairs
    y = rng.integers(-1, 3, size=300)
    query = np.repeat(np.arange(30), 10)
    datasets.dump_svmlight_file(
        X, y, str(path), zero_based=zero_based, query_id=query, comment="made by a test"
    )


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """``write(text, name="s.svm")``: the text (str or bytes) as a file in ``tmp_path``."""

    def make(text: str | bytes, name: str = "s.svm") -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    return make


# --------------------------------------------------------------------------- contents
def test_hand_parsed_file(write: Callable[..., Path]) -> None:
    table = read_svmlight(write(SVMLIGHT))
    # one-based indices (no index 0) -> columns 0..2
    expected = np.array([[0.5, 0.0, -22.5], [0.0, 1.5, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 1e-3]])
    _assert_canonical(table.X)
    np.testing.assert_array_equal(table.X.toarray(), expected)
    np.testing.assert_array_equal(table.y, [1, -1, 1, -1])
    assert table.y.dtype == np.int64
    assert table.feature_names == []
    assert table.reading_options == {"zero_based": False}
    wide = read_svmlight(write(SVMLIGHT), n_features=5, dtype="float32")
    assert wide.X.shape == (4, 5)
    assert wide.X.dtype == np.float32
    with pytest.raises(DataError, match=r"line 2: feature index 3 is beyond the 2 features"):
        read_svmlight(write(SVMLIGHT), n_features=2)


@pytest.mark.parametrize("zero_based", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_agrees_with_scikit_learn(
    tmp_path: Path, rng: np.random.Generator, zero_based: bool, dtype: type
) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    path = tmp_path / "s.libsvm"
    _random_file(path, rng, zero_based=zero_based)
    ref_X, ref_y = datasets.load_svmlight_file(
        str(path), n_features=40, zero_based=zero_based, dtype=dtype
    )
    table = read_svmlight(path, n_features=40, zero_based=zero_based, dtype=dtype)
    _assert_canonical(table.X)
    assert table.X.dtype == dtype
    np.testing.assert_array_equal(table.X.indptr, ref_X.indptr)
    np.testing.assert_array_equal(table.X.indices, ref_X.indices)
    np.testing.assert_array_equal(table.X.data, ref_X.data)  # exactly: both round once
    np.testing.assert_array_equal(table.y, ref_y)
    # "auto" finds the base scikit-learn's "auto" finds (column 0 is used in this file).
    auto = read_svmlight(path)
    ref_auto, _ = datasets.load_svmlight_file(str(path))
    assert auto.reading_options == {"zero_based": zero_based}
    assert auto.X.shape == ref_auto.shape
    assert (ref_auto != auto.X).nnz == 0


def test_numbers_are_parsed_exactly(write: Callable[..., Path], rng: np.random.Generator) -> None:
    # Shortest repr (17 digits), %.16g, small, huge and subnormal magnitudes, signs, exponents.
    values = np.concatenate(
        [
            rng.normal(size=400),
            rng.normal(size=100) * 10.0 ** rng.integers(-300, 300, size=100),
            [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 1.0, 0.1],
        ]
    )
    texts = [repr(float(v)) for v in values] + [f"{v:.16g}" for v in values]
    texts = [t for t in texts if np.isfinite(float(t))]  # 16 digits may round past the max
    texts += ["1.", ".5", "+3", "1E5", "-2.5e-3", "0001.25"]
    lines = [f"{k % 2} 1:{t}" for k, t in enumerate(texts)]
    table = read_svmlight(write("\n".join(lines) + "\n"))
    np.testing.assert_array_equal(table.X.toarray()[:, 0], [float(t) for t in texts])
    np.testing.assert_array_equal(table.y, np.arange(len(texts)) % 2)


def test_labels_integral_or_not(write: Callable[..., Path]) -> None:
    assert read_svmlight(write("1.0 1:1\n-2 1:1\n")).y.dtype == np.int64
    table = read_svmlight(write("0.5 1:1\n-2 1:1\n"))
    assert table.y.dtype == np.float64
    np.testing.assert_array_equal(table.y, [0.5, -2.0])


def test_layout_unsorted_rows_blanks_tabs_and_line_ends(write: Callable[..., Path]) -> None:
    # Tabs, CRLF, trailing blanks, a label-only row, no final newline, unsorted indices.
    text = b"1\t3:3  1:1 \r\n\r\n0 # no pairs, a comment\n  1 2:2 5:5\t4:4   \n0 2:0"
    table = read_svmlight(write(text), zero_based=True)
    expected = np.zeros((4, 6))
    expected[0, [1, 3]] = [1, 3]
    expected[2, [2, 4, 5]] = [2, 4, 5]
    _assert_canonical(table.X)
    np.testing.assert_array_equal(table.X.toarray(), expected)
    assert table.X.nnz == 6  # the explicit zero of the last line is kept
    np.testing.assert_array_equal(table.y, [1, 0, 1, 0])


def test_blocks_and_long_lines(
    write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    """Blocks far smaller than a line (one line spans many reads) give the same matrix."""
    path = write("", "r.svm")
    _random_file(path, rng, zero_based=False)
    whole = read_svmlight(path)
    for size in (1, 7, 64, 1000):
        monkeypatch.setattr(_svmlight, "BLOCK_BYTES", size)
        small = read_svmlight(path)
        assert (small.X != whole.X).nnz == 0
        np.testing.assert_array_equal(small.y, whole.y)
        chunks = list(iter_batches(path, chunk_rows=33))
        assert [c.n_rows for c in chunks] == [33] * 9 + [3]
        assert (sp.vstack([c.X for c in chunks]) != whole.X).nnz == 0
    monkeypatch.setattr(_svmlight, "BLOCK_BYTES", 64)
    lines = path.read_text().splitlines()
    lines[61] = "1 3:x"
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"r\.svm, line 62: the value 'x' of feature 3"):
        read_svmlight(path)


def test_index_types_int32_when_they_fit_int64_otherwise(write: Callable[..., Path]) -> None:
    """The rule of the data layer, also without a matrix of that size."""
    from gpulogreg.data.sparse import index_dtype

    for nnz, width in [(5, 10), (2**31 - 1, 2**31 - 1), (2**31, 3), (3, 2**31), (2**40, 2**40)]:
        assert _svmlight.csr_index_dtype(nnz, width) == index_dtype(nnz, width)
    wide = read_svmlight(write("1 1:1 2147483648:2\n0 3:1\n"))
    assert wide.X.shape == (2, 2**31)
    assert wide.X.indices.dtype == wide.X.indptr.dtype == np.int64
    assert wide.X[0, 2**31 - 1] == 2.0
    assert wide.X.data.nbytes == 3 * 8  # nothing dense was made
    narrow = read_svmlight(write("1 1:1 2147483647:2\n0 3:1\n"))
    assert narrow.X.shape == (2, 2**31 - 1)
    assert narrow.X.indices.dtype == np.int32


# --------------------------------------------------------------------------- sources
def test_compressed_files_and_standard_input(
    write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = read_svmlight(write(SVMLIGHT))
    raw = SVMLIGHT.encode()
    for name, packed in (("s.svm.gz", gzip.compress(raw)), ("s.libsvm.bz2", bz2.compress(raw))):
        path = write(packed, name)
        assert detect_format(path) == "svmlight"
        table = read_data(path)
        assert (table.X != plain.X).nnz == 0
        np.testing.assert_array_equal(table.y, plain.y)
        chunks = list(iter_batches(path, chunk_rows=3))
        assert (sp.vstack([c.X for c in chunks]) != plain.X).nnz == 0
    _stdin(monkeypatch, raw)
    table = read_data("-", format="svmlight")
    assert (table.X != plain.X).nnz == 0
    _stdin(monkeypatch, raw)  # streamed: the base and the width given, read as it comes
    chunks = list(
        iter_batches("-", format="svmlight", n_features=3, zero_based=False, chunk_rows=3)
    )
    assert [c.n_rows for c in chunks] == [3, 1]
    assert (sp.vstack([c.X for c in chunks]) != plain.X).nnz == 0
    _stdin(monkeypatch, b"1 1:1\n0 2:x\n")
    with pytest.raises(DataError, match=r"<stdin>, line 2: the value 'x' of feature 2"):
        read_data("-", format="svmlight")
    truncated = write(gzip.compress(raw)[:-12], "t.svm.gz")
    with pytest.raises(DataError, match=r"t\.svm\.gz: cannot read"):
        read_data(truncated)


def test_streamed_chunks_equal_the_whole_file(
    write: Callable[..., Path], rng: np.random.Generator
) -> None:
    path = write("", "r.svm")
    _random_file(path, rng, zero_based=True)
    whole = read_data(path)
    found = svmlight_survey(path)
    assert (found.n_rows, found.nnz) == (300, whole.X.nnz)
    assert found.zero_based("auto") is True
    assert found.width(True) == whole.X.shape[1] == 40
    chunks = list(iter_batches(path, chunk_rows=64))
    assert [c.n_rows for c in chunks] == [64] * 4 + [44]
    for c in chunks:
        _assert_canonical(c.X)
        assert c.X.shape[1] == 40
        assert c.reading_options == {"zero_based": True}
    assert (sp.vstack([c.X for c in chunks]) != whole.X).nnz == 0
    np.testing.assert_array_equal(np.concatenate([c.y for c in chunks]), whole.y)
    # Columns by index, in the order given, in both readers.
    picked = read_data(path, features=[7, 2])
    assert picked.feature_names == ["x7", "x2"]
    np.testing.assert_array_equal(picked.X.toarray(), whole.X[:, [7, 2]].toarray())
    _assert_canonical(picked.X)
    streamed = list(iter_batches(path, features="7,2", chunk_rows=100))
    assert streamed[0].feature_names == ["x7", "x2"]
    assert (sp.vstack([c.X for c in streamed]) != picked.X).nnz == 0


def test_reading_options_read_a_test_file_as_its_training_file(write: Callable[..., Path]) -> None:
    train = write("1 0:1.5 2:2\n0 1:3\n", "train.svm")
    test = write("1 1:4 2:5\n", "test.svm")  # zero-based too, but without index 0
    fitted = read_svmlight(train)
    assert fitted.reading_options == {"zero_based": True}
    guessed = read_data(test, n_features=3)
    assert guessed.reading_options == {"zero_based": False}  # the guess "auto" makes
    same = read_data(test, n_features=3, **fitted.reading_options)
    np.testing.assert_array_equal(same.X.toarray(), [[0.0, 4.0, 5.0]])
    chunks = list(iter_batches(test, format="svmlight"))
    assert chunks[0].reading_options == {"zero_based": False}
    with pytest.raises(ValueError, match="zero_based must be 'auto', True or False"):
        read_svmlight(test, zero_based="yes")


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc 1:2\n", "line 3: the label 'abc' is not a number"),
        ("1:2 3:4\n", r"line 3: the label '1:2' is not a number \(each line starts with its"),
        ("0 x:2\n", r"line 3: the feature index in 'x:2' is not an integer"),
        ("0 :2\n", r"line 3: the feature index in ':2' is not an integer"),
        ("0 -4:2\n", r"line 3: negative feature index in '-4:2'"),
        ("0 99999999999999999999:1\n", "line 3: the feature index in .* is too large"),
        ("0 1:zz\n", "line 3: the value 'zz' of feature 1 is not a number"),
        ("0 1:\n", r"line 3: no value after the index in '1:'"),
        ("0 3\n", r"line 3: expected index:value pairs after the label, got '3'"),
        ("0 qid:a 1:1\n", r"line 3: the query id in 'qid:a' is not an integer"),
        ("0 2:1 2:3\n", "line 3: feature index 2 appears twice"),
        ("0 4:1 2:1 4:3\n", "line 3: feature index 4 appears twice"),
        ("0 1:nan\n", "line 3: the value 'nan' of feature 1 is not finite"),
        ("0 1:-inf\n", "line 3: the value '-inf' of feature 1 is not finite"),
        ("0 1:1e999\n", "line 3: the value '1e999' of feature 1 is not finite"),
        ("NaN 1:1\n", "line 3: the label 'NaN' is not finite"),
    ],
)
def test_malformed_lines_are_refused_by_number(
    write: Callable[..., Path], text: str, message: str
) -> None:
    # Line 1 is fine, line 2 a comment: the bad line is the third of the file.
    path = write("1 1:2\n# comment\n" + text + "1 2:1\n", "bad.svm")
    with pytest.raises(DataError, match=r"bad\.svm, " + message):
        read_svmlight(path)
    with pytest.raises(DataError, match=r"bad\.svm, " + message):
        list(iter_batches(path, n_features=5, zero_based=False, chunk_rows=1))


def test_base_and_width_refusals_name_the_line(write: Callable[..., Path]) -> None:
    path = write("1 1:2\n\n0 0:1 3:1\n", "b.svm")
    message = r"b\.svm, line 3: feature index 0 found in a one-based file"
    with pytest.raises(DataError, match=message):
        read_svmlight(path, zero_based=False)
    with pytest.raises(DataError, match=message):
        list(iter_batches(path, zero_based=False))
    assert read_svmlight(path).reading_options == {"zero_based": True}  # "auto"
    with pytest.raises(DataError, match=r"b\.svm, line 3: feature index 3 is beyond the 3"):
        read_svmlight(path, n_features=3)
    with pytest.raises(DataError, match=r"b\.svm, line 3: feature index 3 is beyond the 2"):
        list(iter_batches(path, n_features=2))
    for text, message in [("", "no data lines"), ("# x\n\n", "no data lines")]:
        with pytest.raises(DataError, match=message):
            read_svmlight(write(text, "e.svm"))
    with pytest.raises(DataError, match="no features found"):
        read_svmlight(write("1\n0\n", "e.svm"))
    with pytest.raises(DataError, match="no features found"):
        list(iter_batches(write("1\n0\n", "e.svm")))
