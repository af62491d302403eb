"""Exact minimal adversarial perturbations (MIPVerify's MILP formulation, solved with HiGHS).

Public API:

- :func:`minimal_perturbations` - records for a batch of points of a Keras model;
- :func:`minimal_perturbation` - one point, given a network description and a :class:`Checker`;
- :class:`ExactConfig` - the settings (the workflow's ``exact:`` config section);
- :class:`InputDomain`, :func:`compute_bounds` - one point's domain and the bounds on every node;
- :class:`ExactResult`, :class:`ExactResults`, :func:`save_results`, :func:`load_results`,
  :func:`write_merged_json`, :func:`read_merged_json` - result records and their files.

The network is :class:`robcurves.network.Network` (read with :func:`robcurves.network.from_keras`):
its layers emit their own MILP rows. Distances are always in the record's norm (linf or l1;
l2 needs a quadratic objective, which HiGHS cannot handle in a MILP, and is refused with a
message saying so).
"""

from robcurves.exact.bounds import TIGHTENING_METHODS, InputDomain, compute_bounds
from robcurves.exact.records import (
    STATUSES, ExactResult, ExactResults, load_results, read_merged_json, save_results, write_merged_json,
)
from robcurves.exact.solve import (
    METHODS, Checker, ExactConfig, keras_checker, minimal_perturbation, minimal_perturbations,
)

__all__ = [
    "Checker", "ExactConfig", "ExactResult", "ExactResults", "InputDomain", "METHODS", "STATUSES",
    "TIGHTENING_METHODS", "compute_bounds", "keras_checker", "load_results", "minimal_perturbation",
    "minimal_perturbations", "read_merged_json", "save_results", "write_merged_json",
]
