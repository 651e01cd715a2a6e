"""Readers and writers for odd-one-out triplet files (THINGS 2023, THINGS 2020, plain CSV, npz).

Every reader returns a :class:`~modelrecovery.data.triplets.Triplets` with 0-based concept
indices in THINGS order and 0-based odd positions. Bad input raises
:class:`~modelrecovery.data.triplets.TripletDataError` naming the file, the line (1-based,
counting the header line) and what was expected.

Reading is fast: pandas' C parser reads the numbers and all checks are vectorised. Only when
the parser or a check finds a malformed cell is the offending line re-read as text (or, if
need be, the file scanned line by line) to say exactly what is wrong, so the slow path costs
time only for files that are rejected anyway.

The text formats (THINGS 2023, THINGS 2020, CSV) and the one-value-a-line files (sortindex,
concept ids) may be compressed with gzip, bz2, xz or zip (one member), recognised by the
file's first bytes whatever its name; format detection looks inside.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
import pandas as pd

from modelrecovery.data.triplets import TripletDataError, Triplets
from modelrecovery.input_files import (
    DECOMPRESSION_ERRORS,
    check_compression,
    check_file,
    compression_of,
    open_text,
    read_failure,
    zip_members,
)

__all__ = [
    "THINGS_N_CONCEPTS",
    "THINGS2023_COLUMNS",
    "CSV_COLUMNS",
    "TripletFormat",
    "load_things2023",
    "load_things2023_table",
    "load_things2023_split",
    "load_things2020",
    "load_sortindex",
    "load_csv",
    "save_csv",
    "load_triplets",
    "load_concept_ids",
    "detect_format",
]

THINGS_N_CONCEPTS = 1854
"""Number of THINGS concepts."""

THINGS2023_COLUMNS = ("image1", "image2", "image3", "choice", "subject_id", "noise_ceiling")
"""Columns of THINGS' ``triplets_large_final_correctednc_correctedorder.csv``."""

CSV_COLUMNS = ("i", "j", "k", "odd")
"""Required columns of the plain CSV format (an optional ``subject`` column may follow)."""

TripletFormat = Literal["auto", "things2023", "things2020", "csv", "npz"]

_WHITESPACE = r"\s+"
_INT32_MAX = np.iinfo(np.int32).max
_INT32_MIN = np.iinfo(np.int32).min

PathLike = str | os.PathLike
ConceptIds = Sequence[str] | PathLike | None


# ----------------------------------------------------------------------------------------------
# Public readers
# ----------------------------------------------------------------------------------------------


def load_things2023(
    path: PathLike,
    *,
    n_concepts: int = THINGS_N_CONCEPTS,
    concept_ids: ConceptIds = None,
) -> Triplets:
    """Read THINGS' 2023 triplet file (all rows, every ``noise_ceiling`` set).

    Parameters
    ----------
    path : tab-separated file with header ``image1 image2 image3 choice subject_id
        noise_ceiling``; ids 1-based in THINGS order, ``choice`` the 1-based position of the
        odd one out.
    n_concepts : number of concepts (ids must lie in 1..n_concepts).
    concept_ids : optional concept names (a sequence, or a one-id-a-line file).

    Returns
    -------
    Triplets with 0-based ids, 0-based odd positions and ``subject`` from ``subject_id``.
    Use :func:`load_things2023_split` or :func:`load_things2023_table` for the
    ``noise_ceiling`` column.
    """
    triplets, _ = load_things2023_table(path, n_concepts=n_concepts, concept_ids=concept_ids)
    return triplets


def load_things2023_table(
    path: PathLike,
    *,
    n_concepts: int = THINGS_N_CONCEPTS,
    concept_ids: ConceptIds = None,
) -> tuple[Triplets, np.ndarray]:
    """Read THINGS' 2023 triplet file and keep its ``noise_ceiling`` column.

    Returns
    -------
    (triplets, noise_ceiling) : the triplets as in :func:`load_things2023` and an ``(m,)``
    int8 array (0 = training set, 1/2/3 = repeated noise-ceiling test sets), row-aligned.
    """
    path = Path(path)
    names = _resolve_concept_ids(concept_ids)
    n_concepts = _check_n_concepts(n_concepts, names, path)
    table = _read_table(path, required=THINGS2023_COLUMNS, header=True)
    ids = _column_block(table, ("image1", "image2", "image3"))
    _check_ids(table, ids, ("image1", "image2", "image3"), 1, n_concepts, "1-based THINGS ids")
    choice = table.values["choice"]
    _check_range(table, choice, "choice", 1, 3, "the 1-based position of the odd one out")
    subject = table.values["subject_id"]
    _check_range(table, subject, "subject_id", _INT32_MIN, _INT32_MAX, "a 32-bit integer")
    nc = table.values["noise_ceiling"]
    _check_range(table, nc, "noise_ceiling", 0, 127, "a set number (0 = train, 1-3 = test)")
    triplets = Triplets(
        ids=ids - 1,
        odd=choice - 1,
        n_concepts=n_concepts,
        subject=subject,
        concept_ids=names,
    )
    return triplets, nc.astype(np.int8)


def load_things2023_split(
    path: PathLike,
    *,
    n_concepts: int = THINGS_N_CONCEPTS,
    concept_ids: ConceptIds = None,
) -> dict[int, Triplets]:
    """Read THINGS' 2023 triplet file split by its ``noise_ceiling`` column.

    Returns
    -------
    dict mapping each ``noise_ceiling`` value present (0 = training set; 1, 2, 3 = repeated
    noise-ceiling test sets, set 2 being the one the study uses) to its triplets, rows in file
    order.
    """
    triplets, nc = load_things2023_table(path, n_concepts=n_concepts, concept_ids=concept_ids)
    return {int(v): triplets.subset(nc == v) for v in np.unique(nc)}


def load_things2020(
    path: PathLike,
    *,
    sortindex: PathLike | np.ndarray | Sequence[int],
    n_concepts: int = THINGS_N_CONCEPTS,
    concept_ids: ConceptIds = None,
) -> Triplets:
    """Read a THINGS 2020 triplet file and map its ids to THINGS order.

    Parameters
    ----------
    path : headerless file with 5 integer columns (tab, comma or whitespace separated):
        three 1-based ids in the ORIGINAL 2020 object order, the 1-based position of the odd
        one out, and a subject id.
    sortindex : the permutation ``sortindex[things_index] = original_index`` (0-based), as a
        one-integer-a-line file or an array of length ``n_concepts``.
    n_concepts : number of concepts.
    concept_ids : optional concept names in THINGS order (sequence or file).

    Returns
    -------
    Triplets with ``things_id = argsort(sortindex)[original_id - 1]``, 0-based odd positions
    and subject ids.
    """
    path = Path(path)
    names = _resolve_concept_ids(concept_ids)
    n_concepts = _check_n_concepts(n_concepts, names, path)
    order = load_sortindex(sortindex, n_concepts=n_concepts)
    columns = ("object1", "object2", "object3", "odd_position", "subject")
    table = _read_table(path, required=columns, header=False)
    ids = _column_block(table, columns[:3])
    _check_ids(table, ids, columns[:3], 1, n_concepts, "1-based ids in the original 2020 order")
    odd = table.values["odd_position"]
    _check_range(table, odd, "odd_position", 1, 3, "the 1-based position of the odd one out")
    subject = table.values["subject"]
    _check_range(table, subject, "subject", _INT32_MIN, _INT32_MAX, "a 32-bit integer")
    things_of_original = np.argsort(order)
    return Triplets(
        ids=things_of_original[ids - 1],
        odd=odd - 1,
        n_concepts=n_concepts,
        subject=subject,
        concept_ids=names,
    )


def load_sortindex(
    sortindex: PathLike | np.ndarray | Sequence[int], *, n_concepts: int | None = None
) -> np.ndarray:
    """Read and validate a THINGS ``sortindex`` permutation.

    Parameters
    ----------
    sortindex : a one-integer-a-line file or an array; ``sortindex[things_index] =
        original_index``, 0-based.
    n_concepts : expected length (None: any length).

    Returns
    -------
    (n,) int64 array, a permutation of ``0..n-1``.
    """
    if isinstance(sortindex, (str, os.PathLike)):
        source = str(sortindex)
        lines = _read_lines(Path(sortindex))
        values = []
        for lineno, text in lines:
            try:
                values.append(int(text))
            except ValueError:
                raise TripletDataError(
                    f"{source}: line {lineno}: {text!r} is not an integer "
                    "(expected one 0-based index a line)"
                ) from None
        arr = np.asarray(values, dtype=np.int64)
    else:
        source = "sortindex"
        raw = np.asarray(sortindex)
        if raw.ndim != 1:
            raise TripletDataError(f"{source}: expected a 1-D array, got shape {raw.shape}")
        if raw.size and not np.issubdtype(raw.dtype, np.integer):
            if not np.issubdtype(raw.dtype, np.floating) or not np.all(raw == np.round(raw)):
                raise TripletDataError(f"{source}: expected integers, got dtype {raw.dtype}")
        arr = raw.astype(np.int64)
    if n_concepts is not None and arr.size != n_concepts:
        raise TripletDataError(
            f"{source}: {arr.size} entries, expected one per concept ({n_concepts})"
        )
    if arr.size == 0:
        raise TripletDataError(f"{source}: empty sortindex")
    if not np.array_equal(np.sort(arr), np.arange(arr.size)):
        counts = np.bincount(arr[(arr >= 0) & (arr < arr.size)], minlength=arr.size)
        outside = arr[(arr < 0) | (arr >= arr.size)]
        detail = (
            f"value {int(outside[0])} outside 0-{arr.size - 1}"
            if outside.size
            else f"value {int(np.flatnonzero(counts > 1)[0])} repeated, "
            f"value {int(np.flatnonzero(counts == 0)[0])} missing"
        )
        raise TripletDataError(
            f"{source}: not a permutation of 0-{arr.size - 1} ({detail}); expected "
            "sortindex[things_index] = original_index, 0-based"
        )
    return arr


def load_csv(
    path: PathLike,
    *,
    n_concepts: int | None = None,
    concept_ids: ConceptIds = None,
) -> Triplets:
    """Read the plain CSV format written by :func:`save_csv`.

    Parameters
    ----------
    path : CSV with header ``i,j,k,odd`` and optionally ``subject``; ``i, j, k`` 0-based
        concept indices, ``odd`` the 0-based position (0-2) of the odd one out.
    n_concepts : number of concepts; None: ``len(concept_ids)`` if given, else max id + 1.
    concept_ids : optional concept names (sequence or file).
    """
    path = Path(path)
    names = _resolve_concept_ids(concept_ids)
    if n_concepts is None and names is not None:
        n_concepts = len(names)
    if n_concepts is not None:
        n_concepts = _check_n_concepts(n_concepts, names, path)
    table = _read_table(path, required=CSV_COLUMNS, optional=("subject",), header=True)
    ids = _column_block(table, ("i", "j", "k"))
    if n_concepts is None:
        _check_ids(table, ids, ("i", "j", "k"), 0, None, "0-based concept indices")
        n_concepts = max(int(ids.max()) + 1, 3)
    else:
        _check_ids(table, ids, ("i", "j", "k"), 0, n_concepts - 1, "0-based concept indices")
    odd = table.values["odd"]
    _check_range(table, odd, "odd", 0, 2, "the 0-based position of the odd one out")
    subject = table.values.get("subject")
    if subject is not None:
        _check_range(table, subject, "subject", _INT32_MIN, _INT32_MAX, "a 32-bit integer")
    return Triplets(ids=ids, odd=odd, n_concepts=n_concepts, subject=subject, concept_ids=names)


def save_csv(triplets: Triplets, path: PathLike) -> Path:
    """Write ``triplets`` in the plain CSV format (header ``i,j,k,odd[,subject]``).

    Concept names and ``n_concepts`` are not stored; :func:`load_csv` restores ids, odd
    positions and subjects exactly.
    """
    from modelrecovery.outputs import atomic_path

    path = Path(path)
    columns = {
        "i": triplets.ids[:, 0],
        "j": triplets.ids[:, 1],
        "k": triplets.ids[:, 2],
        "odd": triplets.odd,
    }
    if triplets.subject is not None:
        columns["subject"] = triplets.subject
    with atomic_path(path) as tmp:  # a full disk leaves no half-written file
        pd.DataFrame(columns).to_csv(tmp, index=False, lineterminator="\n")
    return path


def load_concept_ids(path: PathLike) -> tuple[str, ...]:
    """Read concept names, one a line (e.g. THINGS' ``unique_id.txt``); trailing blanks ignored."""
    path = Path(path)
    lines = _read_lines(path)
    seen: dict[str, int] = {}
    for lineno, text in lines:
        if text in seen:
            raise TripletDataError(
                f"{path}: line {lineno}: concept id {text!r} repeats line {seen[text]}"
            )
        seen[text] = lineno
    return tuple(text for _, text in lines)


def detect_format(path: PathLike) -> Literal["things2023", "things2020", "csv", "npz"]:
    """Guess a triplet file's format from its suffix and first line.

    ``.npz`` -> npz; a header starting with ``image1`` -> things2023; a header containing
    ``i, j, k, odd`` -> csv; five headerless integer columns -> things2020.
    """
    path = check_file(path, "triplet file", error=TripletDataError)
    if path.suffix.lower() == ".npz":
        return "npz"
    compression = compression_of(path)
    if compression == "zip" and _is_npz(path):
        return "npz"
    check_compression(path, compression, "triplet file", error=TripletDataError)
    first = _first_line(path, compression)
    if first is None:
        raise TripletDataError(f"{path}: line 1: empty file (expected a triplet table)")
    sep = _sniff_sep(first)
    fields = [f.strip().strip('"').lower() for f in _split(first, sep)]
    if fields and fields[0] == "image1":
        return "things2023"
    if set(CSV_COLUMNS) <= set(fields):
        return "csv"
    if len(fields) == 5 and all(_is_int(f) for f in fields):
        return "things2020"
    raise TripletDataError(
        f"{path}: line 1: cannot tell the format from {first.strip()[:80]!r}; expected a "
        "THINGS 2023 header (image1 image2 image3 choice subject_id noise_ceiling), a CSV "
        "header (i,j,k,odd[,subject]), 5 headerless integer columns (THINGS 2020) or a .npz "
        "file; pass the format explicitly"
    )


def load_triplets(
    path: PathLike,
    format: TripletFormat = "auto",
    sortindex: PathLike | np.ndarray | Sequence[int] | None = None,
    n_concepts: int | None = None,
    concept_ids: ConceptIds = None,
) -> Triplets:
    """Read triplets from any supported format.

    Parameters
    ----------
    path : the file.
    format : ``"auto"`` (see :func:`detect_format`), ``"things2023"``, ``"things2020"``,
        ``"csv"`` or ``"npz"``.
    sortindex : required for ``things2020`` (see :func:`load_things2020`).
    n_concepts : number of concepts; None: 1854 for THINGS files, inferred for csv, stored
        for npz.
    concept_ids : optional concept names (sequence or file).
    """
    path = check_file(path, "triplet file", error=TripletDataError)
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "npz":
        t = Triplets.load(path)
        if n_concepts is not None and t.n_concepts != n_concepts:
            raise TripletDataError(
                f"{path}: stores n_concepts={t.n_concepts}, expected {n_concepts}"
            )
        names = _resolve_concept_ids(concept_ids)
        if names is not None:
            t = Triplets(t.ids, t.odd, t.n_concepts, subject=t.subject, concept_ids=names)
        return t
    if fmt == "csv":
        return load_csv(path, n_concepts=n_concepts, concept_ids=concept_ids)
    things_n = THINGS_N_CONCEPTS if n_concepts is None else n_concepts
    if fmt == "things2023":
        return load_things2023(path, n_concepts=things_n, concept_ids=concept_ids)
    if fmt == "things2020":
        if sortindex is None:
            raise TripletDataError(
                f"{path}: THINGS 2020 format (ids in the original 2020 object order) needs the "
                "sortindex permutation to map ids to THINGS order; pass --sortindex "
                "(sortindex=...)"
            )
        return load_things2020(
            path, sortindex=sortindex, n_concepts=things_n, concept_ids=concept_ids
        )
    raise ValueError(
        f"unknown triplet format {format!r}; expected auto, things2023, things2020, csv or npz"
    )


# ----------------------------------------------------------------------------------------------
# Table reading
# ----------------------------------------------------------------------------------------------


class _Table:
    """Integer columns of a parsed file plus what is needed to name lines in errors."""

    def __init__(self, path: Path, values: dict[str, np.ndarray], first_line: int) -> None:
        self.path = path
        self.values = values
        self.first_line = first_line

    def line(self, row: int) -> int:
        """1-based file line of data row ``row`` (0-based)."""
        return self.first_line + int(row)

    def fail(self, row: int, message: str, n_rows: int = 1) -> NoReturn:
        more = f" ({n_rows} such rows)" if n_rows > 1 else ""
        raise TripletDataError(f"{self.path}: line {self.line(row)}: {message}{more}")


def _read_table(
    path: Path,
    *,
    required: Sequence[str],
    optional: Sequence[str] = (),
    header: bool,
) -> _Table:
    """Parse an integer table fast; every malformed cell is reported with its line."""
    compression = _open_source(path, "triplet file")
    first = _first_line(path, compression)
    if first is None:
        raise TripletDataError(f"{path}: line 1: empty file (expected {_describe(required)})")
    sep = _sniff_sep(first)
    if header:
        names = [f.strip().strip('"') for f in _split(first, sep)]
        missing = [c for c in required if c not in names]
        if missing:
            raise TripletDataError(
                f"{path}: line 1: header {names} lacks column(s) {missing}; expected "
                f"{_describe(required)}" + (f" (optionally {list(optional)})" if optional else "")
            )
        dup = sorted({c for c in names if names.count(c) > 1 and c})
        if dup:
            raise TripletDataError(f"{path}: line 1: header repeats column(s) {dup}")
        first_line = 2
    else:
        names = list(required)
        first_line = 1
    wanted = [c for c in list(required) + list(optional) if c in names]
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops data) when the first row has extra fields.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # mixed types: found below
            df = pd.read_csv(
                path,
                sep=sep,
                header=None,
                names=list(range(len(names))),
                skiprows=first_line - 1,
                index_col=False,
                skip_blank_lines=False,
                engine="c",
                encoding="utf-8-sig",
                compression=compression,
            )
    except DECOMPRESSION_ERRORS as err:
        raise read_failure(path, compression, err, error=TripletDataError) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError, UnicodeDecodeError) as err:
        # "Expected 6 fields in line 12, saw 7" names the (absolute) line; check it first.
        found = re.search(r"in line (\d+)", str(err))
        guess = int(found.group(1)) if found else first_line
        if isinstance(err, pd.errors.ParserWarning):
            guess = first_line
        _diagnose(path, compression, sep, names, first_line, str(err), guess=guess)
    # Trailing blank lines are harmless; blank lines inside the table are errors (below).
    n = len(df)
    if n:
        filled = df.notna().any(axis=1).to_numpy()
        n = int(np.flatnonzero(filled)[-1]) + 1 if filled.any() else 0
        df = df.iloc[:n]
    if n == 0:
        raise TripletDataError(
            f"{path}: line {first_line}: no data rows (expected {_describe(names)} rows"
            + (" after the header)" if header else ")")
        )
    values: dict[str, np.ndarray] = {}
    bad_any = np.zeros(n, dtype=bool)
    for name in wanted:
        col = df[names.index(name)]
        if pd.api.types.is_bool_dtype(col.dtype):
            bad = np.ones(n, dtype=bool)
        elif pd.api.types.is_integer_dtype(col.dtype):
            arr = col.to_numpy()
            bad = np.abs(arr) >= 2**53 if arr.dtype.kind == "u" else np.zeros(n, dtype=bool)
        else:
            # Floats (empty cells, NaN, 2.5) or text ("abc"): locate the malformed cells.
            num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(num) | (num != np.round(num)) | (np.abs(num) >= 2**53)
            arr = num
        bad_any |= bad
        if not bad.any():
            values[name] = arr.astype(np.int64)
    if bad_any.any():
        rows = np.flatnonzero(bad_any)
        _diagnose(
            path,
            compression,
            sep,
            names,
            first_line,
            "malformed cells",
            guess=first_line + int(rows[0]),
            n_bad=rows.size,
        )
    return _Table(path, values, first_line)


def _line_problem(text: str, sep: str, names: Sequence[str]) -> str | None:
    """What is wrong with one data line of the table, or None."""
    if not text.strip():
        return f"empty line inside the table (expected {len(names)} columns: {_describe(names)})"
    fields = _split(text, sep)
    if len(fields) != len(names):
        return f"{len(fields)} columns, expected {len(names)} ({_describe(names)})"
    for name, cell in zip(names, fields, strict=True):
        cell = cell.strip().strip('"')
        if not cell:
            return f"column {name!r} is empty (expected an integer)"
        try:
            number = float(cell)
        except ValueError:
            return f"column {name!r} = {cell!r} is not an integer"
        if math.isnan(number):
            return f"column {name!r} = NaN is not an integer"
        if not math.isfinite(number) or number != round(number):
            return f"column {name!r} = {cell} is not an integer"
        if abs(number) >= 2**53:
            return f"column {name!r} = {cell} is too large"
    return None


def _diagnose(
    path: Path,
    compression: str | None,
    sep: str,
    names: Sequence[str],
    first_line: int,
    hint: str,
    *,
    guess: int | None = None,
    n_bad: int = 1,
) -> NoReturn:
    """Raise for the first malformed line: the ``guess`` line if it is one, else scan."""
    try:
        _find_bad_line(path, compression, sep, names, first_line, hint, guess=guess, n_bad=n_bad)
    except DECOMPRESSION_ERRORS as err:
        raise read_failure(path, compression, err, error=TripletDataError) from None


def _find_bad_line(
    path: Path,
    compression: str | None,
    sep: str,
    names: Sequence[str],
    first_line: int,
    hint: str,
    *,
    guess: int | None,
    n_bad: int,
) -> NoReturn:
    more = f" ({n_bad} such rows)" if n_bad > 1 else ""
    if guess is not None and guess >= first_line:
        with open_text(path, compression, errors="replace") as f:
            for raw in itertools.islice(f, guess - 1, guess):
                problem = _line_problem(raw.rstrip("\r\n"), sep, names)
                if problem is not None:
                    raise TripletDataError(f"{path}: line {guess}: {problem}{more}")
    with open_text(path, compression, errors="replace") as f:
        pending_blank: int | None = None
        for lineno, raw in enumerate(f, 1):
            if lineno < first_line:
                continue
            text = raw.rstrip("\r\n")
            if not text.strip():
                if pending_blank is None:
                    pending_blank = lineno
                continue
            if pending_blank is not None:
                problem = _line_problem("", sep, names)
                raise TripletDataError(f"{path}: line {pending_blank}: {problem}")
            problem = _line_problem(text, sep, names)
            if problem is not None:
                raise TripletDataError(f"{path}: line {lineno}: {problem}")
    raise TripletDataError(f"{path}: cannot parse the triplet table ({hint})")


def _column_block(table: _Table, names: Sequence[str]) -> np.ndarray:
    return np.stack([table.values[c] for c in names], axis=1)


def _check_ids(
    table: _Table,
    ids: np.ndarray,
    names: Sequence[str],
    lo: int,
    hi: int | None,
    what: str,
) -> None:
    """Range and distinctness of the three id columns."""
    outside = ids < lo if hi is None else (ids < lo) | (ids > hi)
    bad = np.flatnonzero(outside.any(axis=1))
    if bad.size:
        row = int(bad[0])
        col = int(np.flatnonzero(outside[row])[0])
        span = f">= {lo}" if hi is None else f"{lo}-{hi}"
        table.fail(
            row,
            f"column {names[col]!r} = {int(ids[row, col])} outside {span} (expected {what})",
            bad.size,
        )
    a, b, c = ids.T
    bad = np.flatnonzero((a == b) | (a == c) | (b == c))
    if bad.size:
        row = int(bad[0])
        table.fail(
            row,
            f"repeated concept in triplet {ids[row].tolist()} (expected three distinct ids)",
            bad.size,
        )


def _check_range(table: _Table, values: np.ndarray, name: str, lo: int, hi: int, what: str) -> None:
    bad = np.flatnonzero((values < lo) | (values > hi))
    if bad.size:
        row = int(bad[0])
        table.fail(
            row,
            f"column {name!r} = {int(values[row])} not in {lo}-{hi} (expected {what})",
            bad.size,
        )


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def _open_source(path: Path, what: str) -> str | None:
    """Check that ``path`` is a readable file in a compression we read; its compression."""
    check_file(path, what, error=TripletDataError)
    compression = compression_of(path)
    check_compression(path, compression, what, error=TripletDataError)
    return compression


def _is_npz(path: Path) -> bool:
    """Whether a zip archive is a NumPy ``.npz`` file (every member a ``.npy`` array)."""
    try:
        members = zip_members(path)
    except DECOMPRESSION_ERRORS:
        return False
    return bool(members) and all(m.endswith(".npy") for m in members)


def _first_line(path: Path, compression: str | None) -> str | None:
    """The first line's text, or None for an empty file; a blank first line is an error."""
    try:
        with open_text(path, compression, errors="replace") as f:
            line = f.readline()
            rest = f.read(4096)
    except DECOMPRESSION_ERRORS as err:
        raise read_failure(path, compression, err, error=TripletDataError) from None
    text = line.rstrip("\r\n")
    if text.strip():
        return text
    if not rest.strip():
        return None
    raise TripletDataError(
        f"{path}: line 1: empty line (expected a header or the first triplet on line 1)"
    )


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of a one-value-a-line file; trailing blank lines dropped."""
    compression = _open_source(path, "file")
    try:
        with open_text(path, compression) as f:
            lines = [(n, raw.strip()) for n, raw in enumerate(f, 1)]
    except UnicodeDecodeError as err:
        raise TripletDataError(
            f"{path}: not UTF-8 text ({err.reason}); expected one value a line"
        ) from None
    except DECOMPRESSION_ERRORS as err:
        raise read_failure(path, compression, err, error=TripletDataError) from None
    while lines and not lines[-1][1]:
        lines.pop()
    if not lines:
        raise TripletDataError(f"{path}: line 1: empty file (expected one value a line)")
    for lineno, text in lines:
        if not text:
            raise TripletDataError(f"{path}: line {lineno}: empty line (expected one value)")
    return lines


def _sniff_sep(line: str) -> str:
    if "\t" in line:
        return "\t"
    if "," in line:
        return ","
    return _WHITESPACE


def _split(text: str, sep: str) -> list[str]:
    return text.split() if sep == _WHITESPACE else text.split(sep)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _describe(names: Sequence[str]) -> str:
    return " ".join(names)


def _resolve_concept_ids(concept_ids: ConceptIds) -> tuple[str, ...] | None:
    if concept_ids is None:
        return None
    if isinstance(concept_ids, (str, os.PathLike)):
        return load_concept_ids(concept_ids)
    return tuple(str(c) for c in concept_ids)


def _check_n_concepts(n_concepts: int, names: tuple[str, ...] | None, path: Path) -> int:
    n = int(n_concepts)
    if n < 3:
        raise TripletDataError(f"{path}: n_concepts must be at least 3, got {n}")
    if names is not None and len(names) != n:
        raise TripletDataError(f"{path}: {len(names)} concept ids given for n_concepts={n}")
    return n
