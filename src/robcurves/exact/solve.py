"""Minimal adversarial perturbations by MILP: per-class queries, witnesses, brackets.

For a point ``x0`` with label ``y`` the minimal distance is ``min_k d_k`` over the other
classes ``k``, where ``d_k`` is the smallest ``||x - x0||`` (x in the input box) with
``logit_k(x) >= logit_y(x)``. Two query types are implemented (``method``):

- ``"minimize"`` (default): one MILP per class, ``min t`` subject to the network and the
  margin row ``z_k - z_y >= 0``, with the best distance found so far as the cutoff
  (the attack's distance enters here: it is the first incumbent).
- ``"auto"``: bisection until the bracket is within ``auto_switch`` (relative), then
  ``"minimize"`` inside the ball of the best upper bound, where few ReLUs are unstable;
  where time-outs left the bracket wider than that, margin queries a step above the
  certified lower bound instead (a small step after a time-out, a larger one after a proof).
- ``"bisect"``: bisection over the radius; at radius ``r`` one margin problem per class,
  ``max z_k - z_y`` over the ball, stopped at the first positive margin (a witness) or
  when its bound drops below 0 (robust for that class). Bounds are recomputed at every
  radius, so they are as tight as the radius allows.

The domain is the ball whose radius is the attack's (verified) distance, intersected
with the model's input box ``[lo, hi]`` (its sidecar's ``bounds``, [0, 1] by default);
without an attack it is ``max_radius`` from the configuration, else the whole box.

A witness is reported only after the TensorFlow model (float32) misclassifies it, it is
in the input box and its distance is measured in float32; "misclassifies" is the one rule
of :mod:`robcurves.adversarial` (strict margin < 0, ties are not adversarial). A clean
point that is already misclassified gets the status ``misclassified`` (never "solved").
When solver tolerances make a witness fail, it is first pushed a hair further from ``x0``;
if that fails, the class is solved again with a positive margin, as MIPVerify's
``margin`` does. A witness that never passes is
dropped, so it cannot turn a bracket into a fake optimum.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from robcurves.adversarial import is_adversarial
from robcurves.exact.bounds import InputDomain
from robcurves.exact.checker import Checker, keras_checker, network_checker
from robcurves.exact.records import BracketTally, ExactResult, ExactResults
from robcurves.exact.strategies import STRATEGIES, SearchState
from robcurves.network import Network, from_keras
from robcurves.norms import Norm, parse_norm
from robcurves.progress import Progress

__all__ = ["Checker", "ExactConfig", "keras_checker", "milp_bracket", "milp_brackets"]


@dataclass
class ExactConfig:
    """Settings of the exact stage (the ``exact:`` section of the workflow config).

    ``time_limit``: seconds per point, bounds included. ``tightening``: list of bound
    methods (interval, symbolic, lp; see :mod:`robcurves.exact.bounds`).
    ``tightening_share``: at most this share of the remaining time goes to symbolic/LP
    tightening. ``method``: auto | minimize | bisect (module docstring).
    ``max_radius``: domain radius (in the norm) where no attack distance is available
    (default: the whole input box). ``rel_gap``/``abs_gap``: when lower and upper agree to
    this, the point counts as solved ("optimal"); ``bisect_rel_tol`` is the bracket at which
    bisection alone calls a point solved, ``auto_switch`` the bracket at which ``auto``
    switches from bisection to the distance MILPs. ``margin``: logit margin of the re-solve
    when a witness fails the float32 check (MIPVerify's ``tolerance``). ``heuristics``:
    HiGHS's primal heuristics (off by default: the attack gives the incumbent, and they
    cost most of the root node's time; see :meth:`MilpBuilder.to_highs`).
    """

    time_limit: float = 30.0
    tightening: Sequence[str] = ("interval", "symbolic")
    method: str = "auto"
    tightening_share: float = 0.5
    max_radius: float | None = None
    rel_gap: float = 1e-4
    abs_gap: float = 1e-6
    bisect_rel_tol: float = 1e-3
    auto_switch: float = 0.05
    threads: int = 1
    margin: float = 1e-4  # positive margin for the re-solve when a witness fails the float32 check
    heuristics: bool = False

    def __post_init__(self) -> None:
        if self.method not in STRATEGIES:
            raise ValueError(f"exact: method must be one of {tuple(STRATEGIES)}, got {self.method!r}")
        if not self.time_limit > 0:
            raise ValueError(f"exact: time_limit must be positive seconds, got {self.time_limit}")
        self.tightening = tuple(self.tightening)



def milp_bracket(net: Network, checker: Checker, x0: np.ndarray, y: int, norm: "str | Norm",
                 config: ExactConfig, attack_distance: float | None = None,
                 x_adv: np.ndarray | None = None, index: int = 0) -> ExactResult:
    """The exact minimal adversarial perturbation of one point (distance in ``norm``).

    ``attack_distance``/``x_adv`` (optional) are an attack's result for this point: a
    verified ``x_adv`` sets the domain radius and the first upper bound.
    """
    norm = parse_norm(norm)
    if not norm.milp_encodable:
        raise ValueError(
            f"exact: the {norm.name} norm needs a quadratic objective (MIQP), which HiGHS cannot solve; "
            "the Python backend supports linf and l1")
    t_start = time.perf_counter()
    deadline = t_start + float(config.time_limit)
    x0 = np.asarray(x0, dtype=np.float32).reshape(checker.input_shape)
    y = int(y)
    st = SearchState(x0=x0, y=y)
    info: dict[str, Any] = {"method": config.method}
    rel_tol = config.rel_gap + (config.bisect_rel_tol if config.method == "bisect" else 0.0)
    abs_tol = config.abs_gap
    logits = np.asarray(checker.logits_fn(x0[None]), dtype=np.float32)
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"exact: the model's logits at point {index} are not finite: {logits[0].tolist()}")
    att = float(attack_distance) if attack_distance is not None and np.isfinite(attack_distance) else math.inf
    if is_adversarial(logits, y)[0]:
        # Counted apart from the solved points (robcurves.exact.records): distance 0 by definition.
        return ExactResult(index, y, norm.name, "misclassified", 0.0, 0.0, x0.copy(), int(np.argmax(logits[0])),
                           time.perf_counter() - t_start, 0.0, {"misclassified": True}, att,
                           attack_verified=att == 0.0, rel_tol=rel_tol, abs_tol=abs_tol)
    attack_ok = False
    if x_adv is not None and math.isfinite(att):
        found = checker.check(x_adv, x0, y)
        attack_ok = found is not None
        if st.offer(found):
            info["attack_upper"] = st.upper
        elif not attack_ok:
            info["attack_rejected"] = "the attack's example is not adversarial on the float32 model"
    if math.isfinite(st.upper):
        radius = st.upper * (1 + 1e-6) + 1e-7  # a hair above, so rounding cannot exclude the witness
    elif config.max_radius is not None:
        radius = float(config.max_radius)
    else:
        radius = checker.default_radius()
    dom = InputDomain.ball(x0, norm, radius, box=checker.box)
    solver = STRATEGIES[config.method]
    lower = solver(net, checker, st, dom, config, deadline, info)
    lower = max(0.0, float(lower))
    upper = float(st.upper)
    tol = rel_tol * upper + abs_tol
    if math.isfinite(upper) and upper - lower <= tol * (1 + 1e-6):  # (1 + 1e-6): rounding of the gap itself
        status = "optimal"
    elif not math.isfinite(upper) and lower >= radius:
        status = "no_adversarial_in_domain"
        lower = radius
    else:
        status = "time_limit"
    return ExactResult(index, y, norm.name, status, lower, upper, st.witness, st.witness_class,
                       time.perf_counter() - t_start, radius, info, att, attack_verified=attack_ok,
                       rel_tol=rel_tol, abs_tol=abs_tol)



def milp_brackets(model, x: np.ndarray, y: np.ndarray, norm: "str | Norm", config: ExactConfig | None = None,
                  attack_distances: np.ndarray | None = None, x_adv: np.ndarray | None = None,
                  indices: Sequence[int] | None = None, progress: Callable[[str], None] | None = None,
                  bounds: Sequence[float] = (0.0, 1.0)) -> ExactResults:
    """Brackets [certified lower, verified upper] of the minimal adversarial distance (in ``norm``)
    of a Keras ``model`` at the points ``x`` (NHWC), by the HiGHS MILP.

    ``attack_distances``/``x_adv`` optionally warm-start every point. ``bounds`` is the
    model's input box (its sidecar's ``bounds``). ``progress`` gets one line per point with
    the running bracket statistics. Returns the records as arrays (:class:`ExactResults`).
    """
    config = config or ExactConfig()
    norm = parse_norm(norm)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"exact: x must be NHWC with one label per point, got {x.shape} and {y.shape}")
    box = (float(bounds[0]), float(bounds[1]))
    net = model if isinstance(model, Network) else from_keras(model, bounds=box)
    checker = network_checker(net, norm, box) if isinstance(model, Network) else keras_checker(model, norm, bounds)
    lo, hi = checker.box
    if x.size and (not np.all(np.isfinite(x)) or x.min() < lo or x.max() > hi):
        raise ValueError(f"exact: the points must lie in the model's input box [{lo}, {hi}]")
    indices = np.arange(len(x)) if indices is None else np.asarray(indices, dtype=np.int64)
    records = []
    tally = BracketTally(norm.name)
    bar = Progress(len(x), f"exact {norm.name}", log=progress, every_s=0.0, enabled=progress is not None)
    for i in range(len(x)):
        ad = None if attack_distances is None else float(attack_distances[i])
        xa = None if x_adv is None or ad is None or not np.isfinite(ad) else x_adv[i]
        rec = milp_bracket(net, checker, x[i], int(y[i]), norm, config, ad, xa, int(indices[i]))
        records.append(rec)
        bar.update(1, tally.add(rec))
    meta = {"backend": "highs", "bounds": [lo, hi],
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}}
    return ExactResults.from_records(records, x.shape[1:], norm.name, meta)
