"""The old home of the nearest-neighbour search; it lives in :mod:`robcurves.scale` now.

Everything public that was importable from here still is.
"""

from robcurves.scale import (  # noqa: F401
    KINDS,
    NearestNeighbours,
    cross_class_duplicates,
    default_threads,
    gpu_visible,
    grid_scale,
    load_nearest,
    nearest_neighbour_distances,
    pair_distances,
    save_nearest,
    validate_inputs,
)
