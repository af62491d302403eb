"""A model on [-1, 1] data through the whole DAG: the box comes from the data set's
metadata and the model's sidecar, and the attacks, the exact stage and the checks use it.

Were any stage to assume [0, 1], this run would fail (the attacks refuse inputs outside
their box) or leave traces checked below: adversarial examples clipped at 0 although the
background pixels are -1, exact witnesses outside the box, a domain radius of the [0, 1]
box.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

CONFIG = Path(__file__).resolve().parent / "configs" / "tiny_pm1.yaml"
TARGETS = ("pm1", "gallery_pm1", "exact_vs_approx")


@pytest.fixture(scope="module")
def pm1_run(tmp_path_factory, snakemake_runner):
    work = tmp_path_factory.mktemp("pm1")
    proc = snakemake_runner(work, *TARGETS, configfile=CONFIG)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@pytest.mark.slow
def test_a_minus_one_to_one_model_runs_end_to_end(pm1_run):
    from robcurves.adversarial import is_adversarial
    from robcurves.data import load_dataset
    from robcurves.exact import load_results
    from robcurves.models import load_model
    from robcurves.norms import parse_norm
    from robcurves.shards import load_attack_shard

    test = load_dataset(pm1_run / "results/data/digits_pm1/test.npz")
    assert test.bounds == (-1.0, 1.0) and test.x.min() == -1.0 and test.x.max() <= 1.0
    model, sidecar = load_model(pm1_run / "results/models/digits_pm1/pm1_st/model.keras")
    assert sidecar["bounds"] == [-1.0, 1.0]
    x, y = test.x[:6], test.y[:6]
    for norm in ("linf", "l1"):
        shard = load_attack_shard(pm1_run / f"results/attacks/digits_pm1/pm1_st/{norm}/shard0of1.npz")
        assert shard["meta"]["settings"]["bounds"] == [-1.0, 1.0]
        assert shard["meta"]["attack_config"]["bounds"] == [-1.0, 1.0]
        adv = shard["status"] == "adversarial"
        assert adv.sum() >= 4, shard["status"]
        xa = shard["x_adv"]
        assert xa.min() >= -1.0 and xa.max() <= 1.0
        assert (xa[adv] < 0).any(), "the examples were clipped at 0: the attack worked in [0, 1]"
        # Every example re-checked here: adversarial on the model, at the recorded distance.
        z = np.asarray(model(xa[adv]), np.float32)
        assert is_adversarial(z, y[adv]).all()
        np.testing.assert_allclose(parse_norm(norm).distance(xa[adv], x[adv]), shard["distances"][adv], rtol=1e-6)
        curve = json.loads((pm1_run / f"results/curves/digits_pm1/pm1_st/{norm}.json").read_text())
        assert curve["n_points"] == 6
        if norm != "linf":
            continue
        # The exact stage: its box is [-1, 1], its witnesses lie in it, its bounds bracket the attack.
        res = load_results(pm1_run / f"results/exact/digits_pm1/pm1_st/{norm}/shard0of1.npz")
        assert res.meta["bounds"] == [-1.0, 1.0]
        for i in range(len(res)):
            assert res.lower[i] <= shard["distances"][i] * (1 + 1e-6) + 1e-7
            if res.status[i] in ("optimal", "time_limit") and np.isfinite(res.upper[i]):
                w = res.witness[i]
                assert w.min() >= -1.0 and w.max() <= 1.0
                assert is_adversarial(np.asarray(model(w[None]), np.float32), [res.label[i]])[0]
            if res.status[i] == "no_adversarial_in_domain" and not res.attack_verified[i]:
                assert res.domain_radius[i] == pytest.approx(2.0)  # the whole box [-1, 1]
        merged = json.loads((pm1_run / f"results/exact/digits_pm1/pm1_st/{norm}.json").read_text())
        assert "[-1.0, 1.0]" in merged["distance_unit"]
    for name in ("curves_pm1", "gallery_pm1", "exact_vs_approx"):
        assert (pm1_run / f"results/figures/{name}.png").stat().st_size > 10_000
