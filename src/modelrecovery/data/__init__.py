"""Triplet data: the triplet type, loaders, concept splits, sampling, noise ceiling."""

from modelrecovery.data.triplets import Triplets, TripletDataError, triplet_keys

__all__ = ["Triplets", "TripletDataError", "triplet_keys"]
