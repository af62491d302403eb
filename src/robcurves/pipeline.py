"""Old name of :mod:`robcurves.stages` (the workflow's stages as plain functions); it re-exports them."""

from robcurves.stages import (  # noqa: F401
    attack_settings,
    attack_shard,
    build_model,
    check_bounds_agree,
    expected_settings,
    merge_curve,
    model_bounds,
    prepare_dataset,
    rescale_to_bounds,
    resolved_methods,
    test_accuracy,
    weights_sha256,
)
