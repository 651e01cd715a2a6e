"""The probe: features -> W -> similarities -> odd-one-out probabilities.

The names below are imported on first use (PEP 562), so that a NumPy-only module such as
:mod:`modelrecovery.probe.zero_shot` can be imported without torch.
"""

from __future__ import annotations

from modelrecovery.lazy import lazy_exports

_SOURCES = {
    "FAMILIES": "families",
    "REGULARISERS": "families",
    "Family": "families",
    "penalty": "families",
    "FittedProbe": "fit",
    "LBFGSSettings": "fit",
    "ProbeProblem": "fit",
    "accuracy_and_nll": "fit",
    "build_problem": "fit",
    "check_features": "fit",
    "fit_probe": "fit",
    "tie_accuracy": "fit",
    "tie_credit": "fit",
    "triplet_probabilities": "fit",
    "PreparedTriplets": "objective",
    "TripletObjective": "objective",
    "choose_path": "objective",
    "RowSpace": "reduced",
    "full_matrix": "reduced",
    "row_space": "reduced",
}

__all__ = sorted(_SOURCES)


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals())
