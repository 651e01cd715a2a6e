"""Triplet data: the triplet type, loaders, concept splits, sampling, noise ceiling."""

from __future__ import annotations

from modelrecovery.lazy import lazy_exports

_SOURCES = {
    "CSV_COLUMNS": "loaders",
    "THINGS2023_COLUMNS": "loaders",
    "THINGS_N_CONCEPTS": "loaders",
    "detect_format": "loaders",
    "load_concept_ids": "loaders",
    "load_csv": "loaders",
    "load_sortindex": "loaders",
    "load_things2020": "loaders",
    "load_things2023": "loaders",
    "load_things2023_split": "loaders",
    "load_things2023_table": "loaders",
    "load_triplets": "loaders",
    "save_csv": "loaders",
    "noise_ceiling": "ceiling",
    "noise_ceiling_details": "ceiling",
    "excluded_keys": "sampling",
    "sample_responses": "sampling",
    "sample_triplets": "sampling",
    "ConceptFold": "splits",
    "concept_folds": "splits",
    "TripletDataError": "triplets",
    "Triplets": "triplets",
    "triplet_keys": "triplets",
}

__all__ = sorted(_SOURCES)
__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals())
