"""Branch and bound on optimised linear bounds (alpha-beta-CROWN style), sound for the float32 model.

- :mod:`.rounding` - what "certified" means: float32 rounding bounds, distance slack;
- :mod:`.concretize` - exact minima of linear functions over linf / l2 / l1 balls ∩ box;
- :mod:`.network` - the network description (:mod:`robcurves.network`) as bounds see it;
- :mod:`.bounds` - CROWN / alpha-CROWN / beta-CROWN, batched over rows (subdomains);
- :mod:`.branching` - BaBSR scores and filtered smart branching;
- :mod:`.domains` - the batched subdomain store and one query "adversarial within r?";
- :mod:`.search` - the minimal distance of one point: a search over radii;
- :mod:`.thresholds` - robust / not robust / unknown at fixed thresholds, many points;
- :mod:`.solve` - the exact stage's ``method: bab``: :func:`bab_brackets` (records like the MILP's).
"""

from robcurves.exact.bab.bounds import BoundEngine, InputBall, RootBounds
from robcurves.exact.bab.domains import BabSettings, Query
from robcurves.exact.bab.search import SearchSettings, WitnessChecker, minimal_distance
from robcurves.exact.bab.solve import BabConfig, bab_brackets

__all__ = ["BabConfig", "BabSettings", "BoundEngine", "InputBall", "Query", "RootBounds", "SearchSettings",
           "WitnessChecker", "bab_brackets", "minimal_distance"]
