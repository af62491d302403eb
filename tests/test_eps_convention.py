"""The eps convention: a float32 distance equal to a threshold as written counts at it.

fl32(8/255), fl32(0.1) and fl32(0.3) are all *larger* than the float64 numbers 8/255, 0.1
and 0.3, so a plain float64 comparison would not count a perturbation of exactly that
size. Every place that reads R(eps) must agree: the curve, Table 1, the command line's
--thresholds, the exact figure and the crossings' grid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from robcurves.curves import count_at_most, robust_error_at, robustness_curve

THRESHOLDS = {"8/255": 8 / 255, "0.1": 0.1, "0.3": 0.3}


@pytest.mark.parametrize("written", list(THRESHOLDS))
def test_a_float32_distance_equal_to_the_threshold_counts(written):
    eps = THRESHOLDS[written]
    d32 = float(np.float32(eps))
    assert d32 > eps  # why the convention is needed: float64 alone would not count it
    # A perturbation of exactly eps, made and measured in float32 as the attacks do.
    x = np.zeros((1, 4), np.float32)
    delta = np.float32(eps) * np.array([[1.0, -1.0, 0.5, 0.0]], np.float32)
    from robcurves.norms import parse_norm

    measured = float(parse_norm("linf").distance(x + delta, x)[0])
    assert measured == d32
    c = robustness_curve(np.array([measured, 2.0, math.inf, 0.0]), "linf")
    assert robust_error_at(c, eps) == pytest.approx(0.5)  # the 0 and the distance of exactly eps
    assert count_at_most([measured], eps) == 1
    # Just above the threshold (one float32 step) it does not count.
    above = float(np.nextafter(np.float32(eps), np.float32(1)))
    assert count_at_most([above], eps) == 0
    # Anything below the threshold in float64 counts, as it always did.
    assert count_at_most([np.nextafter(eps, 0.0)], eps) == 1


def test_every_reader_of_r_eps_uses_the_convention(tmp_path):
    from robcurves.cli import _threshold_rows
    from robcurves.exact.figure import _cdf
    from robcurves.tables import robust_error_table

    d = np.array([float(np.float32(v)) for v in THRESHOLDS.values()] + [0.0, math.inf])
    c = robustness_curve(d, "linf", label="m")
    eps = list(THRESHOLDS.values())
    # Table 1
    rows = robust_error_table([c], {"linf": eps})
    assert [r.robust_error for r in rows] == pytest.approx([2 / 5, 3 / 5, 4 / 5])
    # the command line's --thresholds
    cli = _threshold_rows(c, list(THRESHOLDS.items()))
    assert [r["robust_error"] for r in cli] == pytest.approx([2 / 5, 3 / 5, 4 / 5])
    # the exact figure's curves
    assert _cdf(d, np.array(eps)) == pytest.approx([2 / 5, 3 / 5, 4 / 5])
    # the step function jumps at the distances themselves, where R already counts them
    steps, r = c.steps()
    np.testing.assert_allclose(robust_error_at(c, steps), r)


def test_thresholds_in_the_config_are_compared_by_the_same_rule():
    """Table 1's default thresholds are written as decimals of k/255; k/255 in float32 counts."""
    import yaml

    from robcurves.config import DEFAULT_SCHEMA

    schema = yaml.safe_load(open(DEFAULT_SCHEMA, encoding="utf-8"))
    defaults = schema["properties"]["tables"]["properties"]["robust_error"]["properties"]["thresholds"]["default"]
    for t in defaults["linf"]:
        k = round(t * 255)
        assert count_at_most([float(np.float32(k / 255))], t) == 1
