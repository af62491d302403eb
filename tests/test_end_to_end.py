"""The whole DAG through Snakemake on a tiny config, offline; then the CLI on its outputs."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robcurves.curves import RobustnessCurve

# The tiny run itself is the session fixture ``tiny_run`` of conftest.py.


@pytest.mark.slow
def test_curves_are_complete_and_sane(tiny_run):
    for norm in ("linf", "l2", "l1"):
        curve = RobustnessCurve.load(tiny_run / f"results/curves/digits/tiny_st/{norm}.json")
        assert curve.norm == norm
        assert curve.n_points == 12
        np.testing.assert_array_equal(curve.indices, np.arange(12))
        d = curve.distances
        assert np.all(d >= 0)
        assert np.isfinite(d).sum() >= 10, f"{norm}: the attack should break almost every point: {d}"
        # R is a non-decreasing step function that reaches the share of broken points.
        eps, r = curve.steps()
        assert np.all(np.diff(r) > 0)
        assert r[-1] == pytest.approx(np.isfinite(d).mean())
        # Every reported example was re-checked: misclassified points only at distance 0.
        status = np.asarray(curve.status)
        assert set(status) <= {"misclassified", "adversarial", "not_found", "error"}
        assert np.all((d == 0) == (status == "misclassified"))
    linf = RobustnessCurve.load(tiny_run / "results/curves/digits/tiny_st/linf.json").distances
    l2 = RobustnessCurve.load(tiny_run / "results/curves/digits/tiny_st/l2.json").distances
    ok = np.isfinite(linf) & np.isfinite(l2) & (linf > 0)
    # ||d||_inf <= ||d||_2 holds for the minimal perturbations themselves; an attack's
    # linf estimate can only be a little above the l2 one (each is an upper bound).
    assert np.median(l2[ok] / linf[ok]) >= 1.0


@pytest.mark.slow
def test_figures_exist(tiny_run):
    png = tiny_run / "results/figures/curves_tiny.png"
    pdf = tiny_run / "results/figures/curves_tiny.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert pdf.read_bytes()[:5] == b"%PDF-"


@pytest.mark.slow
def test_model_sidecar_and_nothing_left_to_do(tiny_run, snakemake_runner):
    side = json.loads((tiny_run / "results/models/digits/tiny_st/model.json").read_text())
    assert side["input_shape"] == [8, 8, 1] and side["n_classes"] == 10
    assert side["test_accuracy"] > 0.5
    proc = snakemake_runner(tiny_run, "-n", "all_figures")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr
    leftovers = [p for p in (tiny_run / "results").rglob("*") if ".tmp" in p.name]
    assert leftovers == []


@pytest.mark.slow
def test_cli_on_the_workflow_outputs(tiny_run, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "robcurves", "--dataset", str(tiny_run / "results/data/digits/test.npz"),
         "--model_path", str(tiny_run / "results/models/digits/tiny_st/model.keras"),
         "--n_points", "6", "--norms", "2", "inf", "--save", "--plot", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [s["norm"] for s in lines] == ["l2", "linf"]
    assert (out / "digits_model_l2.json").exists() and (out / "digits_model_linf.json").exists()
    assert (out / "digits_model.png").exists() and (out / "digits_model.pdf").exists()
    curve = RobustnessCurve.load(out / "digits_model_l2.json")
    assert curve.n_points == 6 and curve.norm == "l2"


def test_cli_rejects_a_model_that_does_not_fit_the_data(tmp_path):
    import keras

    from robcurves.models import lenet_small

    x = np.random.default_rng(0).random((4, 10, 10, 1)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(4, np.int64))
    lenet_small((8, 8, 1), 10).save(tmp_path / "m.keras")
    proc = subprocess.run(
        [sys.executable, "-m", "robcurves", "--dataset", str(tmp_path / "d.npz"),
         "--model_path", str(tmp_path / "m.keras"), "--norms", "inf"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "(10, 10, 1)" in proc.stderr and "(8, 8, 1)" in proc.stderr
    del keras


@pytest.mark.slow
def test_gallery_of_the_tiny_run(tiny_run):
    png = tiny_run / "results/figures/gallery_tiny.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    log = (tiny_run / "logs/figures/gallery_tiny.log").read_text()
    drawn = [ln for ln in log.splitlines() if "'quantile'" in ln]
    assert drawn and all("'verified': True" in ln for ln in drawn), log[-2000:]


def test_every_figure_and_table_has_a_target_named_after_it(tmp_path):
    """`snakemake fig2_digits` (default config) plans that figure and what it needs, nothing else
    (here with a table's target in the same dry run)."""
    from test_paper_config import job_counts

    root = Path(__file__).resolve().parents[1]
    targets = {"fig2_digits": "figure_robustness_curves", "exact_gap_statistics": "exact_figure"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "--directory",
                           str(tmp_path), "-n", "--cores", "1", *targets], capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    counts = job_counts(out)
    for target, rule in targets.items():
        assert counts[target] == 1 and counts[rule] == 1, counts
    others = {"figure_gallery", "table1", "crossings", "fig1_toy", "fig5", "table2", "all_figures"}
    assert not others & set(counts), counts
    assert counts["exact_shard"] == 1 and counts["build_model"] == 6  # fig2's six models; exact: one model


def test_attacks_are_never_below_a_certified_lower_bound(tiny_run):
    """On the tiny DAG's network, in every norm: the workflow's attack distances and the
    default attack's never fall below the exact stage's certified lower bound, and every
    exact witness is verified on the float32 model."""
    import numpy as np

    from robcurves import attacks, models
    from robcurves.adversarial import verify_witnesses
    from robcurves.data import load_dataset
    from robcurves.exact import load_results

    model, _ = models.load_model(tiny_run / "results/models/digits/tiny_st/model.keras")
    test = load_dataset(tiny_run / "results/data/digits/test.npz")
    for norm in ("linf", "l2", "l1"):
        ex = load_results(tiny_run / f"results/exact/digits/tiny_st/{norm}/shard0of1.npz")
        assert ex.meta.get("backend") == "bab"  # method auto takes branch and bound for this network
        idx = ex.index
        x, y = test.x[idx], test.y[idx]
        curve = RobustnessCurve.load(tiny_run / f"results/curves/digits/tiny_st/{norm}.json")
        assert np.all(curve.distances[idx] >= ex.lower * (1 - 1e-6)), (norm, curve.distances[idx], ex.lower)
        default = attacks.minimal_perturbations(model, x, y, norm, progress=False)
        assert np.all(default.distances >= ex.lower * (1 - 1e-6)), (norm, default.distances, ex.lower)
        fin = np.isfinite(ex.upper) & (ex.upper > 0)
        ok, dist, _ = verify_witnesses(lambda z: np.asarray(model(z, training=False)), x[fin], ex.witness[fin], y[fin],
                                       norm)
        assert ok.all() and np.allclose(dist, ex.upper[fin], rtol=1e-6)
        assert np.all(ex.lower <= ex.upper)
