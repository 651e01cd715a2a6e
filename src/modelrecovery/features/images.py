"""Image lists: which image file(s) show each concept.

Two table formats are read:

- THINGS: a CSV with header ``image_name`` and one file name a row (``aardvark_01b.jpg``), as in
  ``things1854_image_names.csv``. The concept of a file is its stem without the last
  ``_<suffix>`` (``camera_lens_01b.jpg`` -> ``camera_lens``). Images may lie in subfolders named
  by concept (``<root>/aardvark/aardvark_01b.jpg``) or flat in ``<root>``. NOTE: the published
  ``things1854_image_names.csv`` lists the images in the 2020 object order, which differs from
  THINGS order (``unique_id.txt``) for 21 concepts; pass ``concept_ids`` (THINGS order) to get
  rows in that order.
- generic: a CSV/TSV with columns ``concept`` and ``image`` (path relative to ``root``); several
  rows for one concept are exemplars whose features are averaged.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "ImageList",
    "ImageListError",
    "MissingConceptsError",
    "MissingImageError",
    "load_image_list",
    "open_image",
    "read_image_table",
    "read_things_folder",
    "read_things_image_list",
    "things_concept_id",
]


class ImageListError(ValueError):
    """Bad image list; the message names the file, the concept or the row."""


class MissingImageError(ImageListError, FileNotFoundError):
    """An image file of the list does not exist; the message names the concept and path."""


@dataclass(frozen=True)
class ImageList:
    """The image file(s) of each concept, in concept order.

    Attributes
    ----------
    root : folder the image paths are relative to (used for hashing).
    concept_ids : one id per concept, unique, in row order of the features.
    files : per concept, one or more image paths (exemplars, averaged).
    source : where the list came from (for messages).
    """

    root: Path
    concept_ids: tuple[str, ...]
    files: tuple[tuple[Path, ...], ...]
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "concept_ids", tuple(str(c) for c in self.concept_ids))
        object.__setattr__(self, "files", tuple(tuple(Path(f) for f in fs) for fs in self.files))
        if len(self.concept_ids) != len(self.files):
            raise ImageListError(
                f"{self.source}: {len(self.concept_ids)} concepts but {len(self.files)} file groups"
            )
        if not self.concept_ids:
            raise ImageListError(f"{self.source}: the image list is empty")
        seen: set[str] = set()
        for cid, fs in zip(self.concept_ids, self.files, strict=True):
            if cid in seen:
                raise ImageListError(f"{self.source}: concept {cid!r} appears twice")
            seen.add(cid)
            if not fs:
                raise ImageListError(f"{self.source}: concept {cid!r} has no image")

    def __len__(self) -> int:
        return len(self.concept_ids)

    @property
    def n_images(self) -> int:
        """Total number of image files (exemplars included)."""
        return sum(len(fs) for fs in self.files)

    def items(self) -> list[tuple[int, Path]]:
        """Flat list of (concept index, image path), in concept order."""
        return [(i, f) for i, fs in enumerate(self.files) for f in fs]

    def check_files(self) -> None:
        """Raise :class:`MissingImageError` naming every missing image (first 10 shown)."""
        missing = [
            (c, f)
            for c, fs in zip(self.concept_ids, self.files, strict=True)
            for f in fs
            if not f.is_file()
        ]
        if missing:
            shown = "; ".join(f"concept {c!r}: {f}" for c, f in missing[:10])
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise MissingImageError(
                f"{self.source}: {len(missing)} image file(s) not found: {shown}{more}"
            )

    def _relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.resolve().as_posix()

    def fingerprint(self, mode: Literal["stat", "content"] = "stat") -> str:
        """Hash of the list for caching: concept ids, file paths and the files themselves.

        Parameters
        ----------
        mode : ``"stat"`` hashes each file's size and modification time (fast); ``"content"``
            hashes the bytes (robust to copies and touches, slower).

        Returns
        -------
        Hex SHA-256 digest.
        """
        if mode not in ("stat", "content"):
            raise ValueError(f"mode must be 'stat' or 'content', not {mode!r}")
        self.check_files()
        h = hashlib.sha256(f"modelrecovery.image_list/1:{mode}\n".encode())
        for cid, fs in zip(self.concept_ids, self.files, strict=True):
            for f in fs:
                if mode == "stat":
                    st = f.stat()
                    what: object = [st.st_size, st.st_mtime_ns]
                else:
                    fh = hashlib.sha256()
                    with f.open("rb") as stream:
                        for chunk in iter(lambda stream=stream: stream.read(1 << 20), b""):
                            fh.update(chunk)
                    what = fh.hexdigest()
                h.update(json.dumps([cid, self._relative(f), what]).encode())
                h.update(b"\n")
        return h.hexdigest()


def things_concept_id(image_name: str) -> str:
    """Concept id of a THINGS image file name (``camera_lens_01b.jpg`` -> ``camera_lens``)."""
    stem = Path(image_name).stem
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def _reorder(
    source: str, groups: dict[str, list[Path]], concept_ids: Sequence[str] | None
) -> tuple[tuple[str, ...], tuple[tuple[Path, ...], ...]]:
    if concept_ids is None:
        ids = tuple(groups)
    else:
        ids = tuple(str(c) for c in concept_ids)
        if len(set(ids)) != len(ids):
            raise ImageListError(f"{source}: concept_ids contain duplicates")
        absent = [c for c in ids if c not in groups]
        extra = [c for c in groups if c not in set(ids)]
        if absent or extra:
            parts = []
            if absent:
                parts.append(f"no image for {len(absent)} concept(s), e.g. {absent[:5]}")
            if extra:
                parts.append(
                    f"images for {len(extra)} concept(s) not in concept_ids, e.g. {extra[:5]}"
                )
            raise ImageListError(f"{source}: {'; '.join(parts)}")
    return ids, tuple(tuple(groups[c]) for c in ids)


def _read_rows(table: Path) -> tuple[list[str], list[list[str]]]:
    if not table.is_file():
        raise ImageListError(f"{table}: image table not found")
    text = table.read_text(encoding="utf-8-sig")
    delimiter = "\t" if table.suffix.lower() == ".tsv" or ("\t" in text.split("\n", 1)[0]) else ","
    rows = [
        r for r in csv.reader(text.splitlines(), delimiter=delimiter) if any(c.strip() for c in r)
    ]
    if not rows:
        raise ImageListError(f"{table}: image table is empty")
    header = [c.strip().lower() for c in rows[0]]
    return header, [[c.strip() for c in r] for r in rows[1:]]


def read_things_image_list(
    names_csv: str | os.PathLike[str],
    root: str | os.PathLike[str],
    *,
    concept_ids: Sequence[str] | None = None,
    check: bool = True,
) -> ImageList:
    """Read a THINGS-style image list (CSV with header ``image_name``).

    Parameters
    ----------
    names_csv : the table (e.g. ``things1854_image_names.csv``).
    root : image folder; each image is looked up as ``<root>/<concept>/<name>`` then
        ``<root>/<name>``.
    concept_ids : the concept order wanted (e.g. THINGS' ``unique_id.txt``); every concept must
        have an image and every image a concept. Default: order of first appearance.
    check : raise :class:`MissingImageError` for images that do not exist.

    Returns
    -------
    ImageList.
    """
    table, root = Path(names_csv), Path(root)
    header, rows = _read_rows(table)
    if header[:1] != ["image_name"]:
        raise ImageListError(f"{table}: expected a header 'image_name', got {header}")
    groups: dict[str, list[Path]] = {}
    missing: list[str] = []
    for lineno, row in enumerate(rows, start=2):
        name = row[0]
        if not name:
            raise ImageListError(f"{table}: line {lineno} has no image name")
        concept = things_concept_id(name)
        candidates = [root / concept / Path(name).name, root / name]
        path = next((p for p in candidates if p.is_file()), candidates[0])
        if check and not path.is_file():
            missing.append(f"concept {concept!r}: {candidates[0]} (nor {candidates[1]})")
        groups.setdefault(concept, []).append(path)
    _raise_missing(table, missing, f" under {root}")
    ids, files = _reorder(str(table), groups, concept_ids)
    return ImageList(root, ids, files, source=str(table))


def _raise_missing(table: Path, missing: list[str], where: str = "") -> None:
    """One error listing (up to ten of) the missing images, if any."""
    if missing:
        more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
        raise MissingImageError(
            f"{table}: {len(missing)} image file(s) not found{where}: "
            f"{'; '.join(missing[:10])}{more}"
        )


def read_image_table(
    table: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    concept_ids: Sequence[str] | None = None,
    check: bool = True,
) -> ImageList:
    """Read a generic image table with columns ``concept`` and ``image``.

    Parameters
    ----------
    table : CSV (or TSV) with a header holding ``concept`` and ``image``.
    root : folder that relative image paths are relative to; default the table's folder.
    concept_ids : the concept order wanted; default order of first appearance.
    check : raise :class:`MissingImageError` for images that do not exist.

    Returns
    -------
    ImageList; concepts with several rows have several exemplars.
    """
    table = Path(table)
    root = Path(root) if root is not None else table.parent
    header, rows = _read_rows(table)
    if "concept" not in header or "image" not in header:
        raise ImageListError(f"{table}: expected columns 'concept' and 'image', got {header}")
    ci, ii = header.index("concept"), header.index("image")
    groups: dict[str, list[Path]] = {}
    missing: list[str] = []
    for lineno, row in enumerate(rows, start=2):
        if len(row) <= max(ci, ii) or not row[ci] or not row[ii]:
            raise ImageListError(f"{table}: line {lineno} lacks a concept or an image: {row}")
        path = Path(row[ii]).expanduser()
        path = path if path.is_absolute() else root / path
        if check and not path.is_file():
            missing.append(f"concept {row[ci]!r}: {path}")
        groups.setdefault(row[ci], []).append(path)
    _raise_missing(table, missing)
    ids, files = _reorder(str(table), groups, concept_ids)
    return ImageList(root, ids, files, source=str(table))


def load_image_list(
    table: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    concept_ids: Sequence[str] | None = None,
    check: bool = True,
) -> ImageList:
    """Read an image table of either format (chosen by its header).

    Parameters
    ----------
    table : THINGS names CSV (header ``image_name``) or generic table (``concept``, ``image``).
    root : image folder; default the table's folder.
    concept_ids : the concept order wanted.
    check : raise :class:`MissingImageError` for images that do not exist.
    """
    table = Path(table)
    header, _ = _read_rows(table)
    if header[:1] == ["image_name"]:
        return read_things_image_list(
            table, root if root is not None else table.parent, concept_ids=concept_ids, check=check
        )
    return read_image_table(table, root, concept_ids=concept_ids, check=check)


def open_image(path: str | os.PathLike[str], concept: str | None = None) -> PILImage.Image:
    """Open an image as RGB PIL image; errors name the file (and concept)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    who = f"concept {concept!r}: " if concept is not None else ""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise MissingImageError(f"{who}image file {path} not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageListError(f"{who}cannot read image {path} ({exc})") from exc


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MISSING_LIST = "missing_concepts.txt"


class MissingConceptsError(MissingImageError):
    """Concepts of THINGS without images; ``missing`` lists them all (THINGS order)."""

    def __init__(self, message: str, missing: Sequence[str]) -> None:
        super().__init__(message)
        self.missing = tuple(missing)


def read_things_folder(
    root: str | os.PathLike[str],
    concept_ids: Sequence[str],
    *,
    image_names: Sequence[str] | None = None,
    sortindex: Sequence[int] | None = None,
    exemplars: Literal["reference", "all"] = "reference",
) -> ImageList:
    """The images of a THINGS image folder, one entry per concept in THINGS order.

    Parameters
    ----------
    root : the THINGS image folder: one subfolder per concept (``<root>/aardvark/...``), or
        the reference images flat in ``root``.
    concept_ids : the concepts in THINGS order (``unique_id.txt``: 1854 ids).
    image_names : ``things1854_image_names.csv``'s names, in the ORIGINAL 2020 order.
    sortindex : ``sortindex[things_index] = original_index`` (``sortindex.txt``): the
        reference image of THINGS concept ``t`` is ``image_names[sortindex[t]]``.
    exemplars : ``reference``: the odd-one-out task's image of each concept (needs
        ``image_names`` and ``sortindex``); ``all``: every image in the concept's subfolder
        (their features are averaged).

    Raises
    ------
    MissingConceptsError
        Concepts without images: how many, the first 20 by name, ``.missing`` holds all.
    ImageListError
        A mapping that does not match (an image name of another concept).
    """
    root = Path(root)
    if not root.is_dir():
        raise ImageListError(f"{root}: THINGS image folder not found")
    ids = [str(c) for c in concept_ids]
    files: list[tuple[Path, ...]] = []
    missing: list[str] = []
    if exemplars == "reference":
        if image_names is None or sortindex is None:
            raise ImageListError(
                f"{root}: the reference images need things1854_image_names.csv and "
                "sortindex.txt (or exemplars='all')"
            )
        if len(image_names) != len(ids) or len(sortindex) != len(ids):
            raise ImageListError(
                f"{root}: {len(ids)} concepts but {len(image_names)} image names and "
                f"{len(sortindex)} sortindex entries"
            )
        for t, concept in enumerate(ids):
            name = str(image_names[int(sortindex[t])])
            if things_concept_id(name) != concept:
                raise ImageListError(
                    f"image name {name!r} (row {int(sortindex[t]) + 1} of the 2020-order list, "
                    f"via sortindex[{t}]) is not of concept {concept!r}: the image names, "
                    "sortindex and concept ids do not belong together"
                )
            found = next((p for p in (root / concept / name, root / name) if p.is_file()), None)
            if found is None:
                missing.append(concept)
            else:
                files.append((found,))
    elif exemplars == "all":
        for concept in ids:
            folder = root / concept
            images = (
                sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if folder.is_dir()
                else []
            )
            if images:
                files.append(tuple(images))
            else:
                missing.append(concept)
    else:
        raise ValueError(f"exemplars must be 'reference' or 'all', not {exemplars!r}")
    if missing:
        shown = ", ".join(missing[:20])
        more = f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""
        what = "its reference image" if exemplars == "reference" else "images in <root>/<concept>/"
        raise MissingConceptsError(
            f"{root}: {len(missing)} of {len(ids)} THINGS concepts have no image ({what}): "
            f"{shown}{more}",
            missing,
        )
    return ImageList(root, tuple(ids), tuple(files), source=str(root))
