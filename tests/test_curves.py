import math

import numpy as np
import pytest

from robcurves.curves import RobustnessCurve, dkw_band, robust_error_at, robustness_curve


def test_known_distances_give_exact_step_values_with_ties():
    c = robustness_curve(np.array([0.3, 0.1, 0.3, 0.5, 0.2]), "linf")
    assert robust_error_at(c, 0.0) == 0.0
    assert robust_error_at(c, 0.0999) == 0.0
    assert robust_error_at(c, 0.1) == pytest.approx(0.2)  # right-continuous: counts at d itself
    assert robust_error_at(c, 0.25) == pytest.approx(0.4)
    assert robust_error_at(c, 0.3) == pytest.approx(0.8)  # the tie jumps by two points at once
    assert robust_error_at(c, 0.49) == pytest.approx(0.8)
    assert robust_error_at(c, 0.5) == pytest.approx(1.0)
    np.testing.assert_allclose(robust_error_at(c, [0.1, 0.3, 10.0]), [0.2, 0.8, 1.0])
    eps, r = c.steps()
    np.testing.assert_allclose(eps, [0.1, 0.2, 0.3, 0.5])
    np.testing.assert_allclose(r, [0.2, 0.4, 0.8, 1.0])


def test_misclassified_points_count_at_zero():
    c = robustness_curve(np.array([0.0, 0.0, 1.0, 2.0]), "l2")
    assert robust_error_at(c, 0.0) == pytest.approx(0.5)
    assert robust_error_at(c, 1.5) == pytest.approx(0.75)


def test_inf_never_reaches_one():
    c = robustness_curve(np.array([0.1, math.inf, 0.2, math.inf]), "l1")
    assert robust_error_at(c, 1e30) == pytest.approx(0.5)
    assert robust_error_at(c, math.inf) == pytest.approx(0.5)
    eps, r = c.steps()
    assert r.max() == pytest.approx(0.5)
    all_inf = robustness_curve(np.full(3, math.inf), "l1")
    assert robust_error_at(all_inf, math.inf) == 0.0


def test_nan_and_negative_distances_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        robustness_curve(np.array([0.1, np.nan]), "linf")
    with pytest.raises(ValueError, match=">= 0"):
        robustness_curve(np.array([-0.1]), "linf")


def test_json_round_trip_keeps_inf_and_norm(tmp_path):
    c = RobustnessCurve("inf", np.array([0.0, 0.5, math.inf]), indices=np.array([4, 5, 6]), label="m",
                        status=np.array(["misclassified", "adversarial", "not_found"]), config={"a": 1})
    assert c.norm == "linf"
    c.save(tmp_path / "c.json")
    text = (tmp_path / "c.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    d = RobustnessCurve.load(tmp_path / "c.json")
    assert d.norm == "linf" and d.label == "m" and d.config == {"a": 1}
    np.testing.assert_array_equal(d.distances, c.distances)
    np.testing.assert_array_equal(d.indices, [4, 5, 6])
    assert list(d.status) == list(c.status)


def test_dkw_band_contains_curve_and_has_the_right_width():
    rng = np.random.default_rng(0)
    c = robustness_curve(rng.exponential(size=400), "l2")
    grid = np.linspace(0, 3, 50)
    lo, hi = dkw_band(c, grid)
    r = robust_error_at(c, grid)
    assert np.all(lo <= r) and np.all(r <= hi)
    half = math.sqrt(math.log(2 / 0.05) / 800)
    inner = (r > half) & (r < 1 - half)
    np.testing.assert_allclose((hi - lo)[inner], 2 * half)
