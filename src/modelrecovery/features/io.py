"""Reading and writing feature matrices (one row per concept).

Supported inputs of :func:`load_features`:

- ``.npy``: a 2-D numeric array.
- ``.pt`` / ``.pth``: a tensor, or a dict holding one tensor or a tensor under ``features``.
- text (``.txt``, ``.tsv``, ``.dat``, ``.csv``): one row per line, values separated by
  whitespace (``.csv``: commas); blank lines and lines starting with ``#`` are skipped.
- ``.hdf5`` / ``.h5``: dataset ``features`` or a single dataset (needs ``h5py``).
- a thingsvision output folder holding ``features.npy``, ``features.pt``, ``features.txt`` or
  ``features.hdf5`` (or thingsvision's split files ``features_01.npy``, ``features_02.npy``...).

A feature file may carry the concept ids of its rows in a sidecar next to it:
``<stem>.json`` with key ``concept_ids`` (written by :func:`save_features`) or
``<stem>_ids.txt`` (one id a line).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from modelrecovery.input_files import check_file, read_failure

__all__ = [
    "FEATURE_SUFFIXES",
    "FeatureDataError",
    "load_features",
    "read_concept_ids",
    "read_sidecar",
    "save_features",
    "sidecar_path",
]

SIDECAR_FORMAT = "modelrecovery.features/1"
_TEXT_SUFFIXES = (".txt", ".tsv", ".dat", ".csv")
_TORCH_SUFFIXES = (".pt", ".pth")
_HDF5_SUFFIXES = (".hdf5", ".h5")
FEATURE_SUFFIXES: tuple[str, ...] = (".npy", *_TORCH_SUFFIXES, *_TEXT_SUFFIXES, *_HDF5_SUFFIXES)
"""File suffixes :func:`load_features` reads (besides thingsvision output folders)."""

_THINGSVISION_NAMES = ("features.npy", "features.pt", "features.txt", "features.hdf5")
_RESERVED_SIDECAR_KEYS = ("format", "shape", "dtype", "concept_ids", "created", "sha256")


class FeatureDataError(ValueError):
    """Bad feature input; the message names the file and what was expected."""


# --------------------------------------------------------------------------------------------
# sidecars


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Return the JSON sidecar path of a feature file (``<stem>.json`` next to it)."""
    path = Path(path)
    return path.with_name(path.stem + ".json")


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read the JSON sidecar of a feature file.

    Parameters
    ----------
    path : the feature file (not the sidecar).

    Returns
    -------
    The sidecar as a dict, or None when there is none.
    """
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FeatureDataError(f"{side}: cannot read the JSON sidecar ({exc})") from exc
    if not isinstance(data, dict):
        raise FeatureDataError(f"{side}: expected a JSON object, got {type(data).__name__}")
    return data


def read_concept_ids(path: str | os.PathLike[str]) -> tuple[str, ...] | None:
    """Concept ids of a feature file's rows from its sidecar, or None when it has none.

    Looks for ``<stem>.json`` (key ``concept_ids``) then ``<stem>_ids.txt`` (one id a line).
    """
    path = Path(path)
    data = read_sidecar(path)
    if data is not None and data.get("concept_ids") is not None:
        ids = data["concept_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise FeatureDataError(f"{sidecar_path(path)}: 'concept_ids' must be a list of strings")
        return tuple(ids)
    txt = path.with_name(path.stem + "_ids.txt")
    if txt.is_file():
        lines = txt.read_text(encoding="utf-8").splitlines()
        return tuple(line.strip() for line in lines if line.strip())
    return None


# --------------------------------------------------------------------------------------------
# loading


def _resolve_folder(folder: Path) -> Path | list[Path]:
    """Find the feature file(s) inside a thingsvision output folder."""
    for name in _THINGSVISION_NAMES:
        if (folder / name).is_file():
            return folder / name
    for suffix in (".npy", ".pt", ".txt"):
        splits = [
            p
            for p in folder.iterdir()
            if re.fullmatch(rf"features_(\d+){re.escape(suffix)}", p.name)
        ]
        if splits:
            return sorted(splits, key=lambda p: int(p.stem.split("_")[1]))
    present = sorted(p.name for p in folder.iterdir())[:10]
    raise FeatureDataError(
        f"{folder}: folder holds no thingsvision features; expected one of "
        f"{', '.join(_THINGSVISION_NAMES)} (or split files features_01.npy, ...); "
        f"found {present or 'nothing'}"
    )


def _read_text(path: Path) -> np.ndarray:
    sep = "," if path.suffix.lower() == ".csv" else None
    rows: list[list[float]] = []
    width: int | None = None
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            fields = stripped.split(sep)
            try:
                values = [float(v) for v in fields]
            except ValueError:
                shown = stripped if len(stripped) <= 60 else stripped[:57] + "..."
                raise FeatureDataError(
                    f"{path}: line {lineno} is not numeric ({shown!r}); expected "
                    f"{'comma' if sep else 'whitespace'}-separated numbers"
                ) from None
            if width is None:
                width = len(values)
            elif len(values) != width:
                raise FeatureDataError(
                    f"{path}: line {lineno} has {len(values)} values, expected {width} "
                    "(as on the first data line)"
                )
            rows.append(values)
    if not rows:
        raise FeatureDataError(f"{path}: file is empty; expected one row of numbers per concept")
    return np.asarray(rows, dtype=np.float64)


def _read_torch(path: Path) -> np.ndarray:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FeatureDataError(f"{path}: cannot read as a torch file ({exc})") from exc
    if isinstance(obj, Mapping):
        if "features" in obj:
            obj = obj["features"]
        else:
            tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
            if len(tensors) != 1:
                raise FeatureDataError(
                    f"{path}: dict with keys {sorted(map(str, obj))[:10]}; expected a key "
                    f"'features' or exactly one tensor (found {len(tensors)})"
                )
            obj = tensors[0]
    if not isinstance(obj, torch.Tensor):
        raise FeatureDataError(
            f"{path}: holds a {type(obj).__name__}; expected a tensor or a dict of one tensor"
        )
    if obj.is_complex():
        raise FeatureDataError(f"{path}: complex tensor; expected real numbers")
    return obj.detach().to(torch.float64).numpy()


def _read_hdf5(path: Path) -> np.ndarray:
    try:
        import h5py
    except ImportError:
        raise FeatureDataError(
            f"{path}: reading HDF5 needs the optional package h5py (pip install h5py), or "
            "convert the file to .npy"
        ) from None
    with h5py.File(path, "r") as fh:
        datasets = {k: v for k, v in fh.items() if isinstance(v, h5py.Dataset)}
        if "features" in datasets:
            return np.asarray(datasets["features"][()])
        splits = sorted(k for k in datasets if re.fullmatch(r"features_\d+", k))
        if splits:
            return np.vstack([np.asarray(datasets[k][()]) for k in splits])
        if len(datasets) == 1:
            return np.asarray(next(iter(datasets.values()))[()])
        raise FeatureDataError(
            f"{path}: HDF5 datasets {sorted(datasets)[:10]}; expected 'features' or exactly one"
        )


def _looks_like_text(path: Path) -> bool:
    """The file's first KiB decodes as UTF-8 without NUL bytes."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in head


def _read_array(path: Path) -> np.ndarray:
    check_file(path, "feature file", error=FeatureDataError)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic != b"\x93NUMPY":  # numpy would speak of pickles for any other file
            kind = "a text file" if _looks_like_text(path) else "another binary file"
            raise FeatureDataError(
                f"{path}: not a .npy file (no NumPy header; it looks like {kind}); save "
                f"the features with numpy.save, or name a text file .txt / .csv / .tsv"
            )
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise FeatureDataError(f"{path}: cannot read as .npy ({exc})") from exc
    if suffix in _TORCH_SUFFIXES:
        return _read_torch(path)
    if suffix in _TEXT_SUFFIXES:
        try:
            return _read_text(path)
        except UnicodeDecodeError:
            raise FeatureDataError(
                f"{path}: not UTF-8 text; expected one row of numbers per line"
            ) from None
    if suffix in _HDF5_SUFFIXES:
        return _read_hdf5(path)
    raise FeatureDataError(
        f"{path}: unknown feature file suffix {path.suffix!r}; expected one of "
        f"{', '.join(FEATURE_SUFFIXES)} or a thingsvision output folder"
    )


def _check_ids_match(source: str, file_ids: Sequence[str], expected: Sequence[str]) -> None:
    if list(file_ids) == list(expected):
        return
    if len(file_ids) != len(expected):
        raise FeatureDataError(
            f"{source}: has {len(file_ids)} concept ids, expected {len(expected)} "
            "(the concept_ids passed in)"
        )
    first = next(i for i, (a, b) in enumerate(zip(file_ids, expected, strict=True)) if a != b)
    how = (
        "the same concepts in a different order"
        if sorted(file_ids) == sorted(expected)
        else "different concepts"
    )
    raise FeatureDataError(
        f"{source}: concept ids do not match the expected concept_ids ({how}); first "
        f"difference at row {first}: file has {file_ids[first]!r}, expected {expected[first]!r}"
    )


def _validate(
    arr: np.ndarray,
    source: str,
    n_concepts: int | None,
    ids: Sequence[str] | None,
) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise FeatureDataError(f"{source}: dtype {arr.dtype} is not real numeric")
    if arr.ndim != 2:
        raise FeatureDataError(
            f"{source}: array is {arr.ndim}-D with shape {arr.shape}; expected a 2-D array "
            "(n_concepts x n_features)"
        )
    if arr.size == 0:
        raise FeatureDataError(
            f"{source}: array is empty (shape {arr.shape}); expected one row per concept"
        )
    if n_concepts is not None and arr.shape[0] != n_concepts:
        raise FeatureDataError(
            f"{source}: has {arr.shape[0]} rows, expected n_concepts={n_concepts} "
            "(one row per concept)"
        )
    if ids is not None and arr.shape[0] != len(ids):
        raise FeatureDataError(f"{source}: has {arr.shape[0]} rows but {len(ids)} concept ids")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.dtype.kind == "f":
        bad_rows = ~np.isfinite(arr).all(axis=1)
        if bad_rows.any():
            row = int(np.flatnonzero(bad_rows)[0])
            what = "NaN" if np.isnan(arr[row]).any() else "infinite values"
            name = f" (concept {ids[row]!r})" if ids is not None else ""
            raise FeatureDataError(
                f"{source}: row {row}{name} contains {what} ({int(bad_rows.sum())} bad rows "
                "in all); expected finite numbers"
            )
        if not np.isfinite(out).all():
            row = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
            raise FeatureDataError(
                f"{source}: row {row} overflows float32 (values beyond +-3.4e38)"
            )
    return out


def load_features(
    path: str | os.PathLike[str],
    *,
    n_concepts: int | None = None,
    concept_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """Load a feature matrix (one row per concept) and validate it.

    Parameters
    ----------
    path : feature file (``.npy``, ``.pt``/``.pth``, text, ``.hdf5``) or thingsvision folder.
    n_concepts : expected number of rows, if known.
    concept_ids : expected concept id of each row; checked against the file's sidecar ids when
        it has any (same ids, same order), and against the row count.

    Returns
    -------
    (n, p) float32 array.

    Raises
    ------
    FeatureDataError
        Missing file, unknown suffix, not 2-D, empty, wrong row count, NaN or infinite values
        (names the first bad row), non-numeric text (names the line), id mismatch.
    """
    path = Path(path)
    if not path.exists():
        raise FeatureDataError(f"{path}: feature file not found")
    if concept_ids is not None:
        concept_ids = [str(c) for c in concept_ids]
        if n_concepts is not None and len(concept_ids) != n_concepts:
            raise FeatureDataError(
                f"{path}: n_concepts={n_concepts} but {len(concept_ids)} concept_ids were given"
            )
    try:
        target = _resolve_folder(path) if path.is_dir() else path
    except PermissionError as err:
        raise read_failure(path, None, err, error=FeatureDataError) from None
    if isinstance(target, list):
        source = f"{path} ({target[0].name}..{target[-1].name})"
        parts = [_read_array(p) for p in target]
        if any(p.ndim != 2 for p in parts) or len({p.shape[1] for p in parts}) != 1:
            raise FeatureDataError(
                f"{source}: split files are not 2-D arrays of equal width: "
                f"{[p.shape for p in parts]}"
            )
        arr = np.vstack(parts)
        id_file = target[0].with_name("features.npy")
    else:
        source = str(target) if target == path else f"{path} ({target.name})"
        arr = _read_array(target)
        id_file = target
    file_ids = read_concept_ids(id_file)
    sidecar = read_sidecar(id_file)
    if sidecar is not None and sidecar.get("shape") is not None:
        if tuple(sidecar["shape"]) != tuple(arr.shape):
            raise FeatureDataError(
                f"{source}: sidecar {sidecar_path(id_file).name} records shape "
                f"{tuple(sidecar['shape'])} but the file holds {tuple(arr.shape)}"
            )
    if file_ids is not None and concept_ids is not None:
        _check_ids_match(source, file_ids, concept_ids)
    ids = concept_ids if concept_ids is not None else file_ids
    return _validate(arr, source, n_concepts, ids)


# --------------------------------------------------------------------------------------------
# saving


def _atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through ``write(fileobj)`` into a temporary file, fsync, then rename onto path."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_features(
    path: str | os.PathLike[str],
    features: np.ndarray,
    *,
    concept_ids: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save a feature matrix as float32 ``.npy`` plus a JSON sidecar, both atomically.

    Parameters
    ----------
    path : destination ending in ``.npy``; the sidecar is ``<stem>.json`` next to it.
    features : (n, p) finite array.
    concept_ids : the concept id of each row (recorded in the sidecar).
    metadata : JSON-serialisable provenance, e.g. ``model``, ``weights``, ``preprocessing``,
        ``image_list_hash``; stored at the top level of the sidecar.

    Returns
    -------
    The path of the ``.npy`` file. The sidecar also records ``shape``, ``dtype``,
    ``concept_ids``, ``created`` (UTC, ISO 8601) and the ``sha256`` of the ``.npy`` file.
    """
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"{path}: feature files are saved as .npy; give a path ending in .npy")
    ids = None if concept_ids is None else [str(c) for c in concept_ids]
    arr = _validate(np.asarray(features), f"features for {path}", None, ids)
    meta = dict(metadata or {})
    clash = [k for k in _RESERVED_SIDECAR_KEYS if k in meta]
    if clash:
        raise ValueError(f"metadata may not set the reserved sidecar keys {clash}")
    path.parent.mkdir(parents=True, exist_ok=True)

    digest = hashlib.sha256()

    def write_npy(fh: Any) -> None:
        class _Tee:
            def write(self, b: bytes) -> int:
                digest.update(b)
                return fh.write(b)

        np.save(_Tee(), arr, allow_pickle=False)  # type: ignore[arg-type]

    sidecar = {
        "format": SIDECAR_FORMAT,
        **meta,
        "shape": list(arr.shape),
        "dtype": "float32",
        "concept_ids": ids,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _atomic_write_bytes(path, write_npy)
    sidecar["sha256"] = digest.hexdigest()
    text = json.dumps(sidecar, indent=2, sort_keys=False, default=str) + "\n"
    # the sidecar is renamed last: a complete sidecar marks a complete pair
    _atomic_write_bytes(sidecar_path(path), lambda fh: fh.write(text.encode("utf-8")))
    return path
