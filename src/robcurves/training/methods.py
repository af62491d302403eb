"""The training methods' registry: each method's family, norm and option defaults.

:data:`TRAINING_METHODS` names every rule :func:`robcurves.training.train_model` accepts
(``st``, ``at_*``, ``mmr_at_*``, ``ibp_*``); :func:`resolve_options` checks a config's
options against it and fills in the defaults (the eps-relative ones too). No TensorFlow
here: the config validator imports this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from robcurves.norms import Norm, parse_norm

#: Options every method accepts, with their defaults.
COMMON_DEFAULTS: dict[str, Any] = {
    # The learning rate is divided by 10 for the last (1 - lr_drop_frac) of the epochs,
    # as in Croce et al.'s train.py (drop at 90%). 1.0 disables the drop.
    "lr_drop_frac": 0.9,
    # tf.config.experimental.enable_op_determinism() before training (process-wide).
    "deterministic": True,
}

_AT_DEFAULTS: dict[str, Any] = {
    "ae_frac": 0.5,  # fraction of each batch replaced by adversarial examples (Croce et al.)
    "pgd_steps": 10,
    "pgd_step_size": None,  # None: 2 * eps / pgd_steps (Croce et al.)
    "pgd_random_start": True,
}

_MMR_DEFAULTS: dict[str, Any] = {
    **_AT_DEFAULTS,
    "lmbd": 0.5,  # weight of the regulariser (Croce et al.'s README, MNIST l_inf CNN)
    "gamma_rb": None,  # None: 2 * eps (README: 0.2 for eps 0.1 on MNIST)
    "gamma_db": None,  # None: 2 * eps
    "n_rb_frac_start": 0.1,  # n_rb: fraction of all hidden units, 10% -> 2% over training
    "n_rb_frac_end": 0.02,
    "n_db": None,  # None: the number of classes (all decision boundaries)
    "reg_ramp_frac": 0.1,  # regulariser weight ramps 0 -> 1 over the first 10% of epochs
}

_IBP_DEFAULTS: dict[str, Any] = {
    "kappa_final": 0.5,
    "eps_train_factor": 1.1,  # train at a slightly larger eps than the target (Gowal et al.)
    "warmup_frac": 0.1,  # fraction of steps with eps = 0, kappa = 1
    "ramp_frac": 0.5,  # fraction of steps over which eps and kappa move linearly
}


@dataclass(frozen=True)
class Method:
    """A training rule: its family, norm (if any) and option defaults."""

    name: str
    family: str  # "st", "at", "mmr_at" or "ibp"
    norm: Norm | None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def needs_eps(self) -> bool:
        return self.family != "st"


def _methods() -> dict[str, Method]:
    out = {"st": Method("st", "st", None, {}, "standard training (cross-entropy, Adam)")}
    for nname in ("linf", "l2"):
        norm = parse_norm(nname)
        out[f"at_{nname}"] = Method(
            f"at_{nname}", "at", norm, _AT_DEFAULTS,
            f"PGD adversarial training (Madry et al.) in {nname}")
        out[f"mmr_at_{nname}"] = Method(
            f"mmr_at_{nname}", "mmr_at", norm, _MMR_DEFAULTS,
            f"MMR (Croce et al. 2019) + PGD adversarial training in {nname}")
        out[f"ibp_{nname}"] = Method(
            f"ibp_{nname}", "ibp", norm, _IBP_DEFAULTS,
            f"interval bound propagation (Gowal et al.) in {nname}")
    return out


TRAINING_METHODS: dict[str, Method] = _methods()


def known_methods() -> list[str]:
    """Names accepted by :func:`train_model`."""
    return list(TRAINING_METHODS)


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return TRAINING_METHODS[str(name)]
    except KeyError:
        raise ValueError(
            f"unknown training method {name!r}: expected one of {', '.join(TRAINING_METHODS)}") from None


def method_defaults(name: str) -> dict[str, Any]:
    """All options of method ``name`` (common ones included) with their defaults."""
    return {**COMMON_DEFAULTS, **get_method(name).defaults}


def resolve_options(name: str, eps: float | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``options`` against the method's and fill in defaults (eps-relative ones too)."""
    method = get_method(name)
    allowed = method_defaults(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"method {name!r}: unknown option(s) {unknown}; it accepts {sorted(allowed)}")
    if method.needs_eps:
        if eps is None or not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"method {name!r} needs a positive finite eps (in {method.norm.name}), got {eps!r}")
    elif eps is not None:
        raise ValueError(f"method {name!r} takes no eps, got eps={eps!r}")
    opts = {**allowed, **options}
    if method.family in ("at", "mmr_at"):
        if not 0.0 <= float(opts["ae_frac"]) <= 1.0:
            raise ValueError(f"ae_frac must lie in [0, 1], got {opts['ae_frac']!r}")
        if int(opts["pgd_steps"]) < 1:
            raise ValueError(f"pgd_steps must be at least 1, got {opts['pgd_steps']!r}")
        if opts["pgd_step_size"] is None:
            opts["pgd_step_size"] = 2.0 * float(eps) / int(opts["pgd_steps"])
    if method.family == "mmr_at":
        for g in ("gamma_rb", "gamma_db"):
            if opts[g] is None:
                opts[g] = 2.0 * float(eps)
            if not float(opts[g]) > 0:
                raise ValueError(f"{g} must be positive, got {opts[g]!r}")
    if method.family == "ibp":
        if not 0.0 <= float(opts["kappa_final"]) <= 1.0:
            raise ValueError(f"kappa_final must lie in [0, 1], got {opts['kappa_final']!r}")
        if float(opts["warmup_frac"]) + float(opts["ramp_frac"]) > 1.0:
            raise ValueError("warmup_frac + ramp_frac must not exceed 1")
    if not 0.0 < float(opts["lr_drop_frac"]) <= 1.0:
        raise ValueError(f"lr_drop_frac must lie in (0, 1], got {opts['lr_drop_frac']!r}")
    return opts

