"""Stage ``extract``: network features (one row per concept) of images, cached.

``modelrecovery extract --models NAME [NAME ...] | --default-set --images TABLE_OR_FOLDER
--out DIR [--pretrained] [--batch-size N] [--seed S]`` prints the feature file of each model
(a float32 ``.npy`` with a JSON sidecar); a repeated request reuses the cached files.

``--images`` may be a THINGS image folder (``<folder>/<concept>/<image>``): every one of the
1854 concepts must have its image (else one line naming the missing concepts, all of them
written to ``<out>/missing_concepts.txt``), and rows come in THINGS order
(``unique_id.txt``), the reference image of concept ``t`` being
``things1854_image_names.csv[sortindex[t]]`` (that list is in the original 2020 order).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelrecovery.study.spec import StudySpec


def things_image_list(
    folder: str | Path,
    things_dir: str | Path | None = None,
    exemplars: str = "reference",
    missing_report: Path | None = None,
) -> Any:
    """The image list of a THINGS image folder in THINGS order (1854 concepts), read with
    the THINGS files of ``things_dir`` (``unique_id.txt``, and for the reference images
    ``things1854_image_names.csv`` through ``sortindex.txt``; default
    ``$MODELRECOVERY_THINGS_DIR`` or ``data/things``, as ``modelrecovery data things``
    writes them). Concepts without images stop it with one line; the whole list is written
    to ``missing_report`` when given."""
    import csv
    import os

    from modelrecovery.data.loaders import load_concept_ids, load_sortindex
    from modelrecovery.features.images import MissingConceptsError, read_things_folder

    things = Path(things_dir or os.environ.get("MODELRECOVERY_THINGS_DIR") or "data/things")
    needed = ["unique_id.txt"]
    if exemplars == "reference":
        needed += ["things1854_image_names.csv", "sortindex.txt"]
    absent = [name for name in needed if not (things / name).is_file()]
    if absent:
        raise FileNotFoundError(
            f"{things}: {', '.join(absent)} not found (needed to map a THINGS image folder to "
            "THINGS order): run `modelrecovery data things --skip-large --dest "
            f"{things}` or pass --things-dir"
        )
    concept_ids = load_concept_ids(things / "unique_id.txt")
    names = sortindex = None
    if exemplars == "reference":
        with open(things / "things1854_image_names.csv", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r]
        if not rows or rows[0][0].strip().lower() != "image_name":
            raise ValueError(f"{things / 'things1854_image_names.csv'}: expected header image_name")
        names = [r[0].strip() for r in rows[1:]]
        sortindex = load_sortindex(things / "sortindex.txt", n_concepts=len(concept_ids))
    try:
        return read_things_folder(
            folder, concept_ids, image_names=names, sortindex=sortindex, exemplars=exemplars
        )
    except MissingConceptsError as err:
        if missing_report is None:
            raise
        missing_report.parent.mkdir(parents=True, exist_ok=True)
        missing_report.write_text("\n".join(err.missing) + "\n", encoding="utf-8")
        raise MissingConceptsError(f"{err} (full list: {missing_report})", err.missing) from None


def image_source(
    path: str | Path,
    things_dir: str | Path | None = None,
    exemplars: str = "reference",
    missing_report: Path | None = None,
) -> tuple[Any, Any]:
    """(world or None, image list) of ``--images``: a world folder (with ``world.json``), a
    THINGS image folder (any other folder; see :func:`things_image_list`) or an image table
    (``concept,image`` CSV or THINGS ``image_name`` list)."""
    from modelrecovery.features.images import load_image_list
    from modelrecovery.world.build import METADATA_FILE, load_world

    path = Path(path)
    if path.is_dir():
        if (path / METADATA_FILE).is_file():
            world = load_world(path)
            return world, world.image_list()
        return None, things_image_list(path, things_dir, exemplars, missing_report)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image table or folder not found")
    return None, load_image_list(path)


def extract_study(
    spec: StudySpec,
    images: Any,
    cache_dir: Path,
    *,
    features_dir: str | Path | None = None,
    pretrained: bool = True,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    recompute: bool = False,
) -> dict[str, Any]:
    """Extract every model the study uses (its generators and candidates) that names a
    ``backbone`` and copy each feature file to ``<data.features_dir>/<file>``; models
    without a backbone are listed as slots to fill. A model whose weights are missing
    stops it with one line naming the model, its backbone and what to do."""
    import shutil

    from modelrecovery.features.backbones import BackboneWeightsError
    from modelrecovery.features.extract import extract_features
    from modelrecovery.study.inputs import used_models

    if spec.data.kind != "files":
        raise ValueError("extract --config needs a files study (data.kind: files)")
    used = used_models(spec)
    entries = {name: entry for name, entry in spec.file_models().items() if name in used}
    target = Path(features_dir or spec.data.features_dir or ".")
    result: dict[str, Any] = {}
    slots = []
    for name, entry in entries.items():
        backbone = entry.backbone
        if not backbone:
            slots.append(name)
            continue
        try:
            extracted = extract_features(
                backbone,
                images,
                pretrained=pretrained,
                cache_dir=cache_dir,
                batch_size=batch_size,
                seed=seed,
                device=device,
                progress=progress,
                recompute=recompute,
            )
        except BackboneWeightsError as err:
            reason = " ".join(str(err).split())
            raise ValueError(
                f"model {name} ({backbone}): no pretrained weights available here: {reason} "
                f"Or fill {target / entry.file} yourself (one row per concept)."
            ) from None
        target.mkdir(parents=True, exist_ok=True)
        destination = target / entry.file
        if Path(entry.file).suffix.lower() != ".npy":
            raise ValueError(f"model {name}: extract writes .npy files, not {entry.file!r}")
        tmp = destination.with_suffix(".tmp.npy")
        shutil.copyfile(extracted.path, tmp)
        tmp.replace(destination)
        result[name] = str(destination)
    for name in slots:
        entry = entries[name]
        where = target / entry.file
        state = "present" if where.exists() else "to fill"
        result[name] = f"{state}: {where}" + (f" (from {entry.source})" if entry.source else "")
    return result


def cmd_extract(args: argparse.Namespace) -> dict[str, Any]:
    """Extract features of backbones (or the default model set) from images, cached."""
    from modelrecovery.features.extract import extract_features
    from modelrecovery.world.models import extract_world_features, resolve_models

    out = Path(args.out)
    world, images = image_source(
        args.images,
        getattr(args, "things_dir", None),
        getattr(args, "exemplars", "reference"),
        missing_report=out / "missing_concepts.txt",
    )
    if getattr(args, "config", None):
        from modelrecovery.study.spec import load_spec

        if world is not None:
            raise ValueError("extract --config takes a THINGS image folder or an image table")
        study = load_spec(args.config)
        result = {"images": str(args.images), "n_concepts": len(images)}
        result.update(
            extract_study(
                study,
                images,
                out,
                features_dir=args.features_dir,
                pretrained=not args.random_weights,
                batch_size=args.batch_size,
                seed=args.seed,
                device=args.device,
                progress=not args.no_progress,
                recompute=args.recompute,
            )
        )
        return result
    specs = resolve_models(None if args.default_set else args.models, args.pretrained)
    progress = not args.no_progress
    if world is not None:
        paths = extract_world_features(
            world,
            specs,
            out,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            progress=progress,
            recompute=args.recompute,
        )
    else:
        paths = {}
        for spec in specs:
            result = extract_features(
                spec.name,
                images,
                pretrained=spec.pretrained,
                cache_dir=out,
                batch_size=args.batch_size,
                seed=args.seed,
                device=args.device,
                progress=progress,
                recompute=args.recompute,
            )
            paths[spec.name] = result.path
    result: dict[str, Any] = {"images": str(args.images), "n_concepts": len(images)}
    result.update({name: str(path) for name, path in paths.items()})
    return result
