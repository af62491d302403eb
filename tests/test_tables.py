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


def test_crossings_under_the_null_stay_below_alpha_family_wise():
    """Identical curves drawn twice: whatever crossings the samples show are noise. Over many
    tables of many pairs, the share of tables with any flagged crossing (the family-wise
    error over all pairs and norms) stays at or below alpha, and so does the per-pair rate."""
    rng = np.random.default_rng(0)
    alpha, n, n_models, trials = 0.05, 150, 5, 200
    tables_flagged, pairs, pairs_flagged = 0, 0, 0
    for _ in range(trials):
        curves = []
        for norm in ("linf", "l2"):
            for j in range(n_models):
                d = rng.exponential(0.1, n)
                d[rng.random(n) < 0.1] = math.inf  # some points no attack broke
                curves.append(robustness_curve(d, norm, label=f"m{j}", config={"dataset": "same"}))
        cr = crossings_table(curves, alpha=alpha)
        flagged = {(c.norm, c.model_a, c.model_b) for c in cr if c.significant}
        tables_flagged += bool(flagged)
        pairs += 2 * n_models * (n_models - 1) // 2
        pairs_flagged += len(flagged)
        assert all(0.0 <= c.p_value <= 1.0 for c in cr)
        assert len({(c.norm, c.model_a, c.model_b) for c in cr}) > 0  # the null does give raw crossings
    assert tables_flagged / trials <= alpha
    assert pairs_flagged / pairs <= alpha


def test_family_wise_bands_widen_with_the_family_and_still_find_a_real_crossing():
    n = 2000
    a = robustness_curve((np.arange(n) + 1) / n, "l2", label="A")
    b = robustness_curve(np.r_[np.full(n // 2, 0.25), np.full(n // 2, 0.75)], "l2", label="B")
    few = find_crossings(a, b, 0.05, n_curves=2)
    many = find_crossings(a, b, 0.05, n_curves=40)
    assert [c.significant for c in few][:2] == [True, True] and [c.significant for c in many][:2] == [True, True]
    # p-values are family-wise: 20 times the family, 20 times the p-value (until it reaches 1).
    for f, m in zip(few, many):
        assert m.p_value == pytest.approx(min(1.0, 20 * f.p_value))
    # A crossing significant for one pair alone is not, once the family is larger (n = 200:
    # gaps of about 0.25 give p = 2 K exp(-6.25), 0.008 for K = 2 and 0.08 for K = 20).
    m = 200
    c = robustness_curve((np.arange(m) + 1) / m, "l2", label="C")
    d = robustness_curve(np.r_[np.full(m // 2, 0.25), np.full(m // 2, 0.75)], "l2", label="D")
    alone, in_family = find_crossings(c, d, 0.05, 2), find_crossings(c, d, 0.05, 20)
    assert alone[0].significant and not in_family[0].significant
    assert alone[0].p_value == pytest.approx(4 * math.exp(-((min(alone[0].gap_before, alone[0].gap_after) / 0.1) ** 2)))


def test_crossings_table_pairs_only_curves_of_one_data_set_and_norm():
    u = (np.arange(100) + 1) / 100
    step = np.r_[np.full(50, 0.25), np.full(50, 0.75)]
    curves = [robustness_curve(u, "linf", label="A", config={"dataset": "x"}),
              robustness_curve(step, "linf", label="B", config={"dataset": "x"}),
              robustness_curve(step, "linf", label="C", config={"dataset": "y"}),
              robustness_curve(step, "l2", label="D", config={"dataset": "x"})]
    cr = crossings_table(curves)
    assert {(c.dataset, c.model_a, c.model_b) for c in cr} == {("x", "A", "B")}


def test_the_simultaneous_bands_hold_together_at_the_family_level():
    """K curves of known distribution: all K bands contain their true curves at once in at
    least 1 - alpha of the draws (with separate 95% bands, K = 10 would fail about 40% of
    the time; with the 97.5% bands the old crossing test used, about 22%)."""
    from robcurves.tables import crossing_p_value, simultaneous_band_half_width

    rng = np.random.default_rng(1)
    alpha, n, k, trials = 0.05, 200, 10, 400
    h = simultaneous_band_half_width(n, alpha, k)
    true_r = lambda e: 0.9 * (1 - np.exp(-e / 0.1))  # noqa: E731  (10% never broken)
    failures = 0
    for _ in range(trials):
        ok = True
        for _ in range(k):
            d = np.where(rng.random(n) < 0.1, np.inf, rng.exponential(0.1, n))
            c = robustness_curve(d, "linf")
            eps, r = c.steps()
            # sup |R_n - R| is attained at a jump, just before or at it
            dev = max(np.max(np.abs(r - true_r(eps))), np.max(np.abs(r - 1 / n - true_r(eps))))
            ok &= bool(dev <= h)
        failures += not ok
    assert failures / trials <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / trials)
    # The crossing test is exactly "both gaps beyond the two simultaneous bands".
    for gap in np.linspace(0.01, 0.5, 50):
        for na, nb, kk in ((100, 100, 2), (50, 400, 12)):
            p = crossing_p_value(gap, na, nb, kk)
            sig = gap > simultaneous_band_half_width(na, 0.05, kk) + simultaneous_band_half_width(nb, 0.05, kk)
            assert (p < 0.05) == sig
    # and the table uses the whole family: K = every curve passed in
    curves = [robustness_curve((np.arange(200) + 1) / 200, "l2", label="A"),
              robustness_curve(np.r_[np.full(100, 0.25), np.full(100, 0.75)], "l2", label="B"),
              robustness_curve(np.full(200, 0.5), "linf", label="C")]
    for cr in crossings_table(curves):
        assert cr.p_value == pytest.approx(crossing_p_value(min(cr.gap_before, cr.gap_after), 200, 200, 3))


def test_one_tex_escaping_for_every_table(tmp_path):
    """LaTeX's ten specials are escaped once each, and Table 1 and Table 2 escape a label alike."""
    from robcurves.scale import NearestNeighbours, write_table2
    from robcurves.tablewriter import md_escape, tex_escape

    assert tex_escape(r"a_b&c%d#e$f{g}h~i^j\k") == \
        r"a\_b\&c\%d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    assert tex_escape("\\_") == r"\textbackslash{}\_"  # one pass: the inserted braces stay
    assert md_escape("a|b") == r"a\|b"
    label = "MMR+AT_10% & co"
    write_table([{"model": label, "eps": 0.5}], tmp_path / "t1")
    d = {k: {"linf": np.array([0.5, 0.5])} for k in ("inter", "intra")}
    nn = NearestNeighbours(np.array([0, 1]), ("linf",), d, {k: {"linf": np.array([1, 0])} for k in d},
                           np.zeros((0, 2), np.int64), (1, 1, 2))
    write_table2({label: nn}, tmp_path / "t2.csv", tmp_path / "t2.md", tmp_path / "t2.tex")
    escaped = r"MMR+AT\_10\% \& co"
    assert escaped in (tmp_path / "t1.tex").read_text() and escaped in (tmp_path / "t2.tex").read_text()
    assert f"| {label} |" in (tmp_path / "t1.md").read_text() and f"| {label} |" in (tmp_path / "t2.md").read_text()


def test_write_table_layout(tmp_path):
    write_table([{"model": "a|b", "eps": 1 / 3, "n": 3}], tmp_path / "t", caption="Cap")
    assert (tmp_path / "t.md").read_text() == "Cap\n\n| model | eps | n |\n|---|---|---|\n| a\\|b | 0.3333 | 3 |\n"
    assert (tmp_path / "t.tex").read_text() == ("\\begin{tabular}{lll}\n\\hline\nmodel & eps & n \\\\\n\\hline\n"
                                               "a|b & 0.3333 & 3 \\\\\n\\hline\n\\end{tabular}\n")
    assert (tmp_path / "t.csv").read_text() == "model,eps,n\na|b,0.3333,3\n"
