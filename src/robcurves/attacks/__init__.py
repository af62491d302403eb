"""Minimal adversarial perturbations in linf, l2 and l1: batched searches on any Keras backend.

Public API::

    from robcurves.attacks import minimal_perturbations, AttackResult, verify_adversarial, ATTACK_METHODS
    res = minimal_perturbations(model, x, y, "l2", methods=[{"name": "fmn", "steps": 100}])

Every method is a small class registered in :data:`ATTACK_METHODS`; every candidate is
re-verified on the model before it can count (:func:`verify_adversarial`). The code is
``keras.ops`` plus :mod:`robcurves.backend`: TensorFlow (the default), JAX or PyTorch,
whichever Keras runs on; importing this package imports no other backend.
"""

from robcurves.attacks.base import ATTACK_METHODS, MinimalNormAttack, validate_method_config
from robcurves.attacks.engine import STRENGTHS, Progress, default_methods, minimal_perturbations, shorten_witnesses
from robcurves.attacks.masking import masking_check
from robcurves.attacks.result import ATTACK_STATUSES, AttackResult, predict_logits, verify_adversarial

# Importing the method modules registers them in ATTACK_METHODS.
from robcurves.attacks import apgd as _apgd  # noqa: F401,E402
from robcurves.attacks import fab as _fab  # noqa: F401,E402
from robcurves.attacks import fmn as _fmn  # noqa: F401,E402
from robcurves.attacks import pgd as _pgd  # noqa: F401,E402

__all__ = [
    "ATTACK_METHODS",
    "ATTACK_STATUSES",
    "AttackResult",
    "MinimalNormAttack",
    "STRENGTHS",
    "Progress",
    "default_methods",
    "masking_check",
    "minimal_perturbations",
    "predict_logits",
    "shorten_witnesses",
    "validate_method_config",
    "verify_adversarial",
]
