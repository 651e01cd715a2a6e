"""The probe: features -> W -> similarities -> odd-one-out probabilities."""

from modelrecovery.probe.families import FAMILIES, REGULARISERS, Family, penalty
from modelrecovery.probe.fit import (
    FittedProbe,
    LBFGSSettings,
    ProbeProblem,
    accuracy_and_nll,
    build_problem,
    check_features,
    fit_probe,
    tie_accuracy,
    tie_credit,
    triplet_probabilities,
)
from modelrecovery.probe.objective import PreparedTriplets, TripletObjective, choose_path
from modelrecovery.probe.reduced import RowSpace, full_matrix, row_space

__all__ = [
    "FAMILIES",
    "REGULARISERS",
    "Family",
    "FittedProbe",
    "LBFGSSettings",
    "PreparedTriplets",
    "RowSpace",
    "TripletObjective",
    "ProbeProblem",
    "accuracy_and_nll",
    "build_problem",
    "check_features",
    "choose_path",
    "fit_probe",
    "full_matrix",
    "penalty",
    "row_space",
    "tie_accuracy",
    "tie_credit",
    "triplet_probabilities",
]
