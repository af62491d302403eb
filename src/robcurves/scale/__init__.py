"""The scale of data sets: exact nearest inter-/intra-class distances, Table 2 and Fig. 5.

For every point of a labelled set: the distance to the nearest point of another class
(inter-class) and to the nearest other point of its own class (intra-class), in linf, l2
and l1, with that neighbour's index (Risse et al., ICLR 2021, Table 2 and Fig. 5).

The package, one concept per module:

- ``nearest``: the entry point :func:`nearest_neighbour_distances` (exactness, cost and
  backends are described there);
- ``inputs``, ``grid``, ``duplicates``: input checks, the integer grid of quantised data,
  cross-label duplicates;
- ``scan`` (the tiling drivers), ``merge`` (the order-free running minimum),
  ``kernels_numpy`` and ``kernels_tf`` (how a tile's distances are computed);
- ``neighbours``: the result :class:`NearestNeighbours` and its ``.npz`` file;
- ``summary``, ``table2``, ``fig5``: what the paper reports from it.

``robcurves.distances``, the old name of the search's module, still imports (``robcurves.RENAMED_MODULES``).
"""

from robcurves.scale.duplicates import cross_class_duplicates
from robcurves.scale.grid import grid_scale
from robcurves.scale.inputs import validate_inputs
from robcurves.scale.kernels_tf import gpu_visible
from robcurves.scale.nearest import default_threads, nearest_neighbour_distances
from robcurves.scale.neighbours import KINDS, NearestNeighbours, load_nearest, load_results, save_nearest
from robcurves.scale.scan import pair_distances
from robcurves.scale.summary import NORM_ORDER, STATS, dimensionality, distance_summary, kept_distances
from robcurves.scale.table2 import table2_csv, table2_latex, table2_markdown, table2_rows, write_table2

__all__ = [
    "KINDS", "NORM_ORDER", "STATS", "NearestNeighbours", "cross_class_duplicates", "default_threads",
    "dimensionality", "distance_summary", "gpu_visible", "grid_scale", "kept_distances", "load_nearest",
    "load_results", "nearest_neighbour_distances", "pair_distances", "plot_fig5", "save_nearest", "table2_csv",
    "table2_latex", "table2_markdown", "table2_rows", "validate_inputs", "write_table2",
]


def __getattr__(name: str):
    # Fig. 5 imports matplotlib: only when asked for, so that the distance jobs do without it.
    if name == "plot_fig5":
        from robcurves.scale.fig5 import plot_fig5

        return plot_fig5
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
