"""Triplet data: the triplet type, loaders, concept splits, sampling, noise ceiling."""

from modelrecovery.data.loaders import (
    CSV_COLUMNS,
    THINGS2023_COLUMNS,
    THINGS_N_CONCEPTS,
    detect_format,
    load_concept_ids,
    load_csv,
    load_sortindex,
    load_things2020,
    load_things2023,
    load_things2023_split,
    load_things2023_table,
    load_triplets,
    save_csv,
)
from modelrecovery.data.noise_ceiling import noise_ceiling, noise_ceiling_details
from modelrecovery.data.sampling import excluded_keys, sample_responses, sample_triplets
from modelrecovery.data.splits import ConceptFold, concept_folds
from modelrecovery.data.triplets import TripletDataError, Triplets, triplet_keys

__all__ = [
    "Triplets",
    "TripletDataError",
    "triplet_keys",
    "CSV_COLUMNS",
    "THINGS2023_COLUMNS",
    "THINGS_N_CONCEPTS",
    "detect_format",
    "load_concept_ids",
    "load_csv",
    "load_sortindex",
    "load_things2020",
    "load_things2023",
    "load_things2023_split",
    "load_things2023_table",
    "load_triplets",
    "save_csv",
    "noise_ceiling",
    "noise_ceiling_details",
    "excluded_keys",
    "sample_responses",
    "sample_triplets",
    "ConceptFold",
    "concept_folds",
]
