"""Exact minimal adversarial perturbations (MIPVerify's MILP formulation, solved with HiGHS).

Public API:

- :func:`milp_brackets` - brackets [certified lower, verified upper] of the minimal adversarial
  distance for a batch of points of a Keras model (the attacks' ``minimal_perturbations``
  returns upper bounds only; branch and bound: :func:`robcurves.exact.bab.bab_brackets`);
- :func:`milp_bracket` - one point, given a network description and a :class:`Checker`;
- :class:`ExactConfig` - the settings (the workflow's ``exact:`` config section); its ``method``
  names one of the search strategies in :data:`STRATEGIES`;
- :class:`InputDomain`, :func:`compute_bounds` - one point's domain and the bounds on every node;
- :class:`ExactResult`, :class:`ExactResults` (statuses :data:`RECORD_STATUSES`),
  :func:`save_results`, :func:`load_results`,
  :func:`write_merged_json`, :func:`read_merged_json` - result records and their files.

By role: :mod:`.bounds` (the domain, bounds on every node, the network's MILP rows),
:mod:`.milp` (the MILP builder and HiGHS), :mod:`.queries` (the per-class MILPs),
:mod:`.strategies` (how the queries close a bracket), :mod:`.checker` (the float32 check of
every witness), :mod:`.solve` (the per-point driver and the batch API), :mod:`.records` (result
records and files), :mod:`.stage` (the workflow stage), :mod:`.mipverify` (the MIPVerify.jl
backend), :mod:`.figure` (the exact-vs-attack figure).

The network is :class:`robcurves.network.Network` (read with :func:`robcurves.network.from_keras`):
its layers emit their own MILP rows. Distances are always in the record's norm (linf or l1;
l2 needs a quadratic objective, which HiGHS cannot handle in a MILP, and is refused with a
message saying so).
"""

from robcurves.exact.bounds import TIGHTENING_METHODS, InputDomain, compute_bounds
from robcurves.exact.records import (
    RECORD_STATUSES, ExactResult, ExactResults, load_results, read_merged_json, save_results, write_merged_json,
)
from robcurves.exact.checker import Checker, keras_checker
from robcurves.exact.solve import ExactConfig, milp_bracket, milp_brackets
from robcurves.exact.strategies import STRATEGIES

__all__ = [
    "Checker", "ExactConfig", "ExactResult", "ExactResults", "InputDomain", "RECORD_STATUSES",
    "STRATEGIES", "TIGHTENING_METHODS", "compute_bounds", "keras_checker", "load_results", "milp_bracket",
    "milp_brackets", "read_merged_json", "save_results", "write_merged_json",
]
