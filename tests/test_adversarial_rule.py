"""One rule for "adversarial" (robcurves.adversarial): a tie gets the same verdict everywhere.

The model below scores classes 0 and 1 identically at every input (equal weights, equal
bias), so at any point a label-1 input is a tie that ``argmax`` would resolve to class 0.
The rule says: ties are not adversarial. The attacks, the exact stage, the MIPVerify
record import and the figures must all say so, and all must agree on the control, where
class 1 leads class 0 by one float32 step.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from robcurves.adversarial import is_adversarial, margin  # noqa: E402

X0 = np.array([[[[0.5, 0.5]]]], dtype=np.float32)


def _model(lead: float) -> keras.Model:
    """z0 = x_1, z1 = x_1 + lead, z2 = x_2 - 10 (never the largest)."""
    inp = keras.Input((1, 1, 2))
    out = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(inp))
    m = keras.Model(inp, out)
    W = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    m.get_layer("logits").set_weights([W, np.array([0.0, lead, -10.0], np.float32)])
    return m


@pytest.fixture(scope="module")
def tie():
    m = _model(0.0)
    z = np.asarray(m(X0), np.float32)
    assert z[0, 0] == z[0, 1] and np.argmax(z[0]) == 0  # argmax alone would call label 1 misclassified
    return m


@pytest.fixture(scope="module")
def lead():
    m = _model(2.0 ** -20)  # exact in float32 next to 0.5: class 1 is ahead by one tiny step
    z = np.asarray(m(X0), np.float32)
    assert z[0, 1] > z[0, 0]
    return m


def _logits_fn(m):
    return lambda x: np.asarray(m(np.asarray(x, np.float32), training=False), np.float32)


def test_the_rule_itself():
    z = np.array([[1.0, 1.0, 0.0], [1.0, np.nextafter(np.float32(1), np.float32(2)), 0.0], [np.nan, 0.0, 1.0]],
                 np.float32)
    assert is_adversarial(z, np.array([1, 0, 1])).tolist() == [False, True, False]
    assert margin(z, 1)[0] == 0.0 and math.isnan(margin(z, 0)[2])


def test_attacks(tie, lead):
    from robcurves.attacks import minimal_perturbations
    from robcurves.attacks.result import verify_candidates

    fast = [{"name": "fmn", "steps": 10}]
    res = minimal_perturbations(tie, X0, np.array([1]), "linf", methods=fast, progress=False)
    assert res.status[0] == "not_found" and math.isinf(res.distances[0])  # a tie is correctly classified
    assert not verify_candidates(tie, X0, X0, np.array([1]), "linf")[0][0]
    res = minimal_perturbations(lead, X0, np.array([0]), "linf", methods=fast, progress=False)
    assert res.status[0] == "misclassified" and res.distances[0] == 0.0
    assert verify_candidates(lead, X0, X0, np.array([0]), "linf")[0][0]


def test_exact_stage(tie, lead):
    from robcurves.exact import ExactConfig, keras_checker, milp_brackets

    assert keras_checker(tie, "linf").check(X0[0], X0[0], 1) is None
    res = milp_brackets(tie, X0, np.array([1]), "linf", ExactConfig(time_limit=10))
    assert res.status[0] == "no_adversarial_in_domain"  # proven: nothing beats the tie anywhere
    assert math.isinf(res.upper[0]) and res.summary()["misclassified"] == 0
    assert keras_checker(lead, "linf").check(X0[0], X0[0], 0) is not None
    res = milp_brackets(lead, X0, np.array([0]), "linf", ExactConfig(time_limit=10))
    assert res.status[0] == "misclassified" and res.upper[0] == 0.0


def test_mipverify_record_import(tie, lead):
    from robcurves.exact import keras_checker
    from robcurves.exact.mipverify import record_from_mipverify

    # What Julia would return if its solver stopped on the tie itself (margin 0).
    answer = {"status": "OPTIMAL", "objective": 0.0, "bound": 0.0, "perturbed": X0.reshape(-1).tolist(), "seconds": 0.1}
    rec = record_from_mipverify(answer, keras_checker(tie, "linf"), X0[0], 1, "linf", 0, 1.0, math.inf, 1e-4, 1e-6)
    assert rec.status == "time_limit" and rec.witness is None and math.isinf(rec.upper)
    assert rec.info.get("witness_rejected")
    rec = record_from_mipverify(answer, keras_checker(lead, "linf"), X0[0], 0, "linf", 0, 1.0, math.inf, 1e-4, 1e-6)
    assert rec.status == "misclassified" and rec.upper == 0.0


def test_figures(tie, lead):
    from robcurves.exact.figure import gap_statistics
    from robcurves.gallery import gallery_row

    # The gallery re-checks what it draws: a shard that claims the tie is adversarial is not believed.
    shard = {"indices": np.array([0]), "distances": np.array([0.25], np.float32),
             "status": np.array(["adversarial"]), "x_adv": X0.copy()}
    row = gallery_row(tie, "tie", "linf", X0, np.array([1]), [shard], (0.0, 1.0), quantiles=[0.5])
    assert [e.verified for e in row.examples] == [False]
    row = gallery_row(lead, "lead", "linf", X0, np.array([0]), [shard], (0.0, 1.0), quantiles=[0.5])
    assert [e.verified for e in row.examples] == [True]
    # The exact figure uses only upper bounds that the checker verified.
    point = {"index": 0, "label": 1, "status": "time_limit", "lower": 0.1, "upper": None, "solve_time": 1.0,
             "attack_distance": 0.25, "attack_verified": False, "rel_tol": 1e-4, "abs_tol": 1e-6}
    stats = gap_statistics({"norm": "linf", "points": [point]})
    assert stats["n_attack_rejected"] == 1 and stats["n_with_attack"] == 0
    assert stats["max_band_width"] == 1.0  # the lower bound counts from 0.1; no upper bound counts at all
    stats = gap_statistics({"norm": "linf", "points": [{**point, "attack_verified": True}]})
    assert stats["n_attack_rejected"] == 0 and stats["max_attack_excess"] == 1.0
