import math

import numpy as np
import pytest

from robcurves.curves import robustness_curve
from robcurves.tables import clopper_pearson, crossings_table, find_crossings, robust_error_table, write_table


def test_table1_values_match_hand_computed_R_including_ties():
    c = robustness_curve(np.array([0.0, 1 / 255, 1 / 255, 4 / 255, 0.5, math.inf]), "linf", label="m")
    rows = robust_error_table([c], {"linf": [1 / 255, 4 / 255, 8 / 255]})
    # by hand: d <= 1/255 -> {0, 1/255, 1/255} = 3/6; d <= 4/255 -> 4/6; d <= 8/255 -> 4/6
    assert [r.robust_error for r in rows] == pytest.approx([3 / 6, 4 / 6, 4 / 6])
    for r in rows:
        assert r.ci_low <= r.robust_error <= r.ci_high
        assert r.n_points == 6


def test_clopper_pearson_edges():
    assert clopper_pearson(0, 10)[0] == 0.0
    assert clopper_pearson(10, 10)[1] == 1.0
    lo, hi = clopper_pearson(50, 100)
    assert lo == pytest.approx(0.3983, abs=1e-3) and hi == pytest.approx(0.6017, abs=1e-3)


def test_crossing_of_synthetic_curves_at_known_eps():
    n = 2000
    # A: distances uniform on [0, 1]; B: half of the points at 0.25, the other half at 0.75.
    # R_A(e) = e; R_B = 0 before 0.25, 0.5 on [0.25, 0.75), 1 after. They cross at 0.25
    # (B jumps above A) and again at 0.5 (A catches up with B's plateau).
    a = robustness_curve((np.arange(n) + 1) / n, "l2", label="A")
    b = robustness_curve(np.r_[np.full(n // 2, 0.25), np.full(n // 2, 0.75)], "l2", label="B")
    cr = find_crossings(a, b)
    assert [round(c.eps, 3) for c in cr] == [0.25, 0.5, 0.75]
    assert cr[0].a_below_before is False  # before 0.25, A has the higher robust error
    assert cr[0].significant and cr[1].significant


def test_tiny_samples_do_not_give_significant_crossings():
    a = robustness_curve(np.array([0.1, 0.4]), "linf", label="A")
    b = robustness_curve(np.array([0.2, 0.3]), "linf", label="B")
    cr = crossings_table([a, b])
    assert len(cr) >= 1 and not any(c.significant for c in cr)


def test_write_table_formats(tmp_path):
    paths = write_table([{"model": "a_b", "eps": 0.5}], tmp_path / "t", caption="T")
    assert [p[-3:] for p in paths] == ["csv", ".md", "tex"]
    assert "a\\_b" in (tmp_path / "t.tex").read_text()
    assert (tmp_path / "t.csv").read_text().splitlines() == ["model,eps", "a_b,0.5"]
    write_table([{"model": "MMR+AT, wine", "eps": 0.5}], tmp_path / "u")
    assert (tmp_path / "u.csv").read_text().splitlines()[1] == '"MMR+AT, wine",0.5'
