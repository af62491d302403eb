"""Branch and bound as the exact stage's method: records for a batch of points.

:func:`bab_brackets` has the signature of :func:`robcurves.exact.solve.milp_brackets`
and returns the same records (:class:`robcurves.exact.records.ExactResults`), so the
workflow, the figure and the CLI take either method. Every point gets an anytime bracket
(:mod:`robcurves.exact.bab.search`): ``lower`` is a certificate for the float32 model
(:mod:`robcurves.exact.bab.rounding`), ``upper`` a verified witness's float32 distance.
Status ``optimal`` means the bracket closed to ``rel_tol`` (stored in the record's info),
``time_limit`` that the time ran out first.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from robcurves.adversarial import is_adversarial
from robcurves.exact.bab import rounding
from robcurves.exact.bab.bounds import BoundEngine
from robcurves.exact.bab.domains import BabSettings
from robcurves.exact.bab.network import bound_graph
from robcurves.exact.bab.search import LOW_START, SearchSettings, WitnessChecker, minimal_distance
from robcurves.exact.records import BracketTally, ExactResult, ExactResults
from robcurves.norms import parse_norm
from robcurves.progress import Progress


@dataclass
class BabConfig:
    """Settings of ``exact.method: bab``: ``time_limit`` seconds per point (every radius it
    tries), ``rel_tol`` the bracket at which a point is done, ``max_radius`` the domain
    radius where no attack distance is known, and the branch-and-bound knobs."""

    time_limit: float = 60.0
    rel_tol: float = 0.01
    max_radius: float | None = None
    strategy: str = "top_down"
    bab: BabSettings = field(default_factory=BabSettings)
    low_start: dict | None = None  # per norm name: overrides search.LOW_START (the bounds phase's start)

    def search(self) -> SearchSettings:
        extra = {} if self.low_start is None else {"low_start": {**LOW_START, **self.low_start}}
        return SearchSettings(rel_tol=self.rel_tol, strategy=self.strategy, bab=self.bab, **extra)


def logits_function(model) -> Callable[[np.ndarray], np.ndarray]:
    """float32 logits of a Keras model (inference mode), compiled once."""
    from robcurves import backend as B

    f = B.logits_function(model)

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(B.to_numpy(f(np.asarray(x, dtype=np.float32))), dtype=np.float32)

    return run


def bab_brackets(model, x: np.ndarray, y: np.ndarray, norm, config: BabConfig | None = None,
                 attack_distances: np.ndarray | None = None, x_adv: np.ndarray | None = None,
                 indices: Sequence[int] | None = None, progress: Callable[[str], None] | None = None,
                 bounds: Sequence[float] = (0.0, 1.0), net=None) -> ExactResults:
    """Certified brackets of the minimal adversarial distance (in ``norm``) of ``x`` (NHWC).

    ``attack_distances``/``x_adv``: the attack's results (re-verified here; they give the
    first upper bound). ``bounds``: the model's input box. ``net``: the network
    description (read from ``model`` with ``bounds`` if None).
    """
    cfg = config or BabConfig()
    norm = parse_norm(norm)
    notes = rounding.check_float32_kernels()
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"exact: x must be NHWC with one label per point, got {x.shape} and {y.shape}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if x.size and (not np.all(np.isfinite(x)) or x.min() < lo or x.max() > hi):
        raise ValueError(f"exact: the points must lie in the model's input box [{lo}, {hi}]")
    graph = bound_graph(net if net is not None else model, tuple(bounds))
    engine = BoundEngine(graph, norm)
    logits_fn = logits_function(model)
    checker = WitnessChecker(logits_fn, x.shape[1:], norm, graph.bounds)
    indices = np.arange(len(x)) if indices is None else np.asarray(indices, dtype=np.int64)
    # Without an attack's witness the domain is the ball of ``max_radius`` (default: the
    # whole input box, whose diameter in the norm is this).
    width = graph.bounds[1] - graph.bounds[0]
    n_in = graph.n_inputs
    max_radius = float(cfg.max_radius) if cfg.max_radius is not None else \
        {"linf": width, "l2": width * math.sqrt(n_in), "l1": width * n_in}[norm.name]
    records = []
    tally = BracketTally(norm.name)
    bar = Progress(len(x), f"exact {norm.name} (bab)", log=progress, every_s=0.0, enabled=progress is not None)
    clean = logits_fn(x)
    for i in range(len(x)):
        t0 = time.perf_counter()
        ad = math.inf if attack_distances is None else float(attack_distances[i])
        if not np.all(np.isfinite(clean[i])):
            raise ValueError(f"exact: the model's logits at point {int(indices[i])} are not finite")
        if is_adversarial(clean[i:i + 1], int(y[i]))[0]:
            # Counted apart from the solved points (robcurves.exact.records): distance 0 by definition.
            rec = ExactResult(int(indices[i]), int(y[i]), norm.name, "misclassified", 0.0, 0.0, x[i].copy(),
                              int(np.argmax(clean[i])), time.perf_counter() - t0, 0.0,
                              {"misclassified": True, "method": "bab"}, ad, attack_verified=ad == 0.0,
                              rel_tol=cfg.rel_tol, abs_tol=0.0)
        else:
            w, ad_v, attack_ok = None, math.inf, False
            if x_adv is not None and math.isfinite(ad):
                ok, dist, xc = checker.verify(x[i], int(y[i]), x_adv[i][None])
                attack_ok = bool(ok[0])
                if attack_ok:
                    w, ad_v = xc[0], float(dist[0])
            res = minimal_distance(engine, checker, x[i], int(y[i]), ad_v, w, cfg.time_limit, cfg.search(),
                                   max_radius=max_radius)
            info = {"method": "bab", "queries": res.queries, "proven_radius": res.proven_radius,
                    "float32_checks": notes}
            if not attack_ok and math.isfinite(ad):
                info["attack_rejected"] = "the attack's example is not adversarial on the float32 model"
            if math.isfinite(res.upper):
                radius = res.upper
                status = "optimal" if res.upper - res.lower <= cfg.rel_tol * res.upper * (1 + 1e-9) else "time_limit"
                lower = res.lower
            else:
                radius = res.proven_radius
                done = res.proven_radius >= max_radius
                status = "no_adversarial_in_domain" if done else "time_limit"
                lower = res.lower
            rec = ExactResult(int(indices[i]), int(y[i]), norm.name, status, float(lower), float(res.upper),
                              None if res.witness is None else res.witness.reshape(x.shape[1:]),
                              int(res.witness_class), time.perf_counter() - t0, float(radius), info, ad,
                              attack_verified=attack_ok, rel_tol=cfg.rel_tol, abs_tol=0.0)
        records.append(rec)
        bar.update(1, tally.add(rec))
    meta = {"backend": "bab", "bounds": [lo, hi], "config": {"time_limit": cfg.time_limit, "rel_tol": cfg.rel_tol,
                                         "strategy": cfg.strategy, "bab": vars(cfg.bab)}}
    return ExactResults.from_records(records, x.shape[1:], norm.name, meta)
