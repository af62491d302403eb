"""The float32 check of every witness: is it adversarial on the model users run, and how far is it?

:class:`Checker` clips a candidate into the model's input box, evaluates the model in
float32 and applies the one rule of :mod:`robcurves.adversarial`; the exact strategies,
the MIPVerify backend and the attack warm start all offer their candidates through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from robcurves.adversarial import is_adversarial
from robcurves.network import Network
from robcurves.norms import Norm, parse_norm


@dataclass
class Checker:
    """Re-checks candidate witnesses on the reference model in float32.

    ``box`` is the model's input box ``[lo, hi]`` (its sidecar's ``bounds``); candidates
    are clipped into it. "Adversarial" is :func:`robcurves.adversarial.is_adversarial`:
    some class scores strictly higher than the label (ties are not adversarial).
    """

    logits_fn: Callable[[np.ndarray], np.ndarray]
    input_shape: tuple[int, ...]
    norm: Norm
    box: tuple[float, float] = (0.0, 1.0)

    def check(self, x_cand: np.ndarray, x0: np.ndarray, y: int) -> tuple[np.ndarray, float, int] | None:
        """Return ``(witness, float32 distance, predicted class)`` or None if it fails.

        Tries ``x0 + s (x - x0)`` for s = 1 and a few values a hair above 1 (the solver's
        tolerance can leave the point exactly on the decision boundary), clipped to ``box``.
        """
        x0f = np.asarray(x0, dtype=np.float64).reshape(-1)
        delta = np.asarray(x_cand, dtype=np.float64).reshape(-1) - x0f
        scales = np.array([1.0, 1 + 1e-6, 1 + 1e-5, 1 + 1e-4, 1 + 1e-3])
        cands = np.clip(x0f[None] + scales[:, None] * delta[None], self.box[0], self.box[1]).astype(np.float32)
        logits = np.asarray(self.logits_fn(cands.reshape(len(cands), *self.input_shape)), dtype=np.float32)
        ok = is_adversarial(logits, y)
        if not ok.any():
            return None
        i = int(np.argmax(ok))
        w = cands[i].reshape(self.input_shape)
        dist = float(self.norm.distance(w[None], np.asarray(x0, dtype=np.float32).reshape(1, *self.input_shape))[0])
        return w, dist, int(np.argmax(logits[i]))

    def default_radius(self) -> float:
        """The radius (in ``norm``) of a ball that holds the whole input box around any point."""
        return self.norm.diameter(int(np.prod(self.input_shape)), self.box)


def keras_checker(model, norm: "str | Norm", bounds: Sequence[float] = (0.0, 1.0)) -> Checker:
    """A :class:`Checker` that evaluates ``model`` (Keras) in float32 on the input box ``bounds``."""
    shape = tuple(int(s) for s in model.inputs[0].shape[1:])

    def logits_fn(x: np.ndarray) -> np.ndarray:
        return np.asarray(model(np.asarray(x, dtype=np.float32), training=False), dtype=np.float32)

    return Checker(logits_fn, shape, parse_norm(norm), (float(bounds[0]), float(bounds[1])))



def network_checker(net: Network, norm: "str | Norm", bounds: Sequence[float] = (0.0, 1.0)) -> Checker:
    """A :class:`Checker` that evaluates the network description ``net`` (its NumPy twin)."""

    def logits_fn(xb: np.ndarray) -> np.ndarray:
        return net.predict(np.asarray(xb, dtype=np.float32))

    return Checker(logits_fn, net.input_shape, parse_norm(norm), (float(bounds[0]), float(bounds[1])))
