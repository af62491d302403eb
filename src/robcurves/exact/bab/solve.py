"""Branch and bound as the exact stage's method: records for a batch of points.

:func:`minimal_perturbations` has the signature of :func:`robcurves.exact.solve.minimal_perturbations`
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
from robcurves.exact.bab.search import SearchSettings, WitnessChecker, minimal_distance
from robcurves.exact.records import ExactResult, ExactResults
from robcurves.norms import parse_norm


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

    def search(self) -> SearchSettings:
        return SearchSettings(rel_tol=self.rel_tol, strategy=self.strategy, bab=self.bab)


def logits_function(model) -> Callable[[np.ndarray], np.ndarray]:
    """float32 logits of a Keras model (inference mode), compiled once."""
    from robcurves import backend as B

    f = B.logits_function(model)

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(B.to_numpy(f(np.asarray(x, dtype=np.float32))), dtype=np.float32)

    return run


def minimal_perturbations(model, x: np.ndarray, y: np.ndarray, norm, config: BabConfig | None = None,
                          attack_distances: np.ndarray | None = None, x_adv: np.ndarray | None = None,
                          indices: Sequence[int] | None = None, progress: Callable[[str], None] | None = None,
                          net=None) -> ExactResults:
    """Certified brackets of the minimal adversarial distance (in ``norm``) of ``x`` (NHWC).

    ``attack_distances``/``x_adv``: the attack's results (re-verified here; they give the
    first upper bound). ``net``: the network description (read from ``model`` if None).
    """
    cfg = config or BabConfig()
    norm = parse_norm(norm)
    notes = rounding.check_float32_kernels()
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"exact: x must be NHWC with one label per point, got {x.shape} and {y.shape}")
    graph = bound_graph(net if net is not None else model)
    engine = BoundEngine(graph, norm)
    logits_fn = logits_function(model)
    checker = WitnessChecker(logits_fn, x.shape[1:], norm, graph.bounds)
    indices = np.arange(len(x)) if indices is None else np.asarray(indices, dtype=np.int64)
    records = []
    clean = logits_fn(x)
    for i in range(len(x)):
        t0 = time.perf_counter()
        ad = math.inf if attack_distances is None else float(attack_distances[i])
        if is_adversarial(clean[i:i + 1], int(y[i]))[0]:
            rec = ExactResult(int(indices[i]), int(y[i]), norm.name, "optimal", 0.0, 0.0, x[i].copy(),
                              int(np.argmax(clean[i])), time.perf_counter() - t0, 0.0,
                              {"misclassified": True, "method": "bab"}, ad)
        else:
            w = None
            if x_adv is not None and math.isfinite(ad):
                ok, dist, xc = checker.verify(x[i], int(y[i]), x_adv[i][None])
                if ok[0]:
                    w, ad_v = xc[0], float(dist[0])
                else:
                    ad_v = math.inf
            else:
                ad_v = math.inf
            res = minimal_distance(engine, checker, x[i], int(y[i]), ad_v, w, cfg.time_limit, cfg.search(),
                                   max_radius=cfg.max_radius)
            if math.isfinite(res.upper):
                radius = res.upper
                status = "optimal" if res.upper - res.lower <= cfg.rel_tol * res.upper else "time_limit"
            else:
                radius = res.proven_radius
                status = "no_adversarial_in_domain" if res.proven_radius >= (cfg.max_radius or math.inf) \
                    else "time_limit"
            info = {"method": "bab", "rel_tol": cfg.rel_tol, "queries": res.queries,
                    "proven_radius": res.proven_radius, "float32_checks": notes}
            rec = ExactResult(int(indices[i]), int(y[i]), norm.name, status, float(res.lower), float(res.upper),
                              None if res.witness is None else res.witness.reshape(x.shape[1:]),
                              int(res.witness_class), time.perf_counter() - t0, float(radius), info, ad)
        records.append(rec)
        if progress is not None:
            progress(f"point {rec.index}: {rec.status} [{rec.lower:.6g}, {rec.upper:.6g}] "
                     f"({norm.name}) in {rec.solve_time:.1f}s")
    meta = {"backend": "bab", "config": {"time_limit": cfg.time_limit, "rel_tol": cfg.rel_tol,
                                         "strategy": cfg.strategy, "bab": vars(cfg.bab)}}
    return ExactResults.from_records(records, x.shape[1:], norm.name, meta)
