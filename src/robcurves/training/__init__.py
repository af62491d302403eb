"""Training rules of the model zoo: ST, PGD adversarial training, MMR+AT and IBP.

One entry point, :func:`train_model`, trains a Keras model in place with one of the
methods in :data:`TRAINING_METHODS` and returns a JSON-ready record of what it did (settings,
final training loss and accuracy, wall time) for the model sidecar's ``made_by``.

Methods (``eps`` is the training radius, measured in the method's norm; inputs in [0, 1]):

- ``st``: standard training, mean cross-entropy, Adam.
- ``at_linf``, ``at_l2``: adversarial training in the style of Madry et al. (2018): a
  fraction ``ae_frac`` of every batch is replaced by PGD adversarial examples at ``eps``
  (random start, ``pgd_steps`` steps of size ``pgd_step_size``; Croce et al.'s default
  step ``2 * eps / pgd_steps``).
- ``mmr_at_linf``, ``mmr_at_l2``: the maximum-margin regulariser (MMR) of Croce,
  Andriushchenko and Hein (AISTATS 2019) on top of the adversarial training above, as
  in their code: for every point, the distances (in the attacked norm) to the
  ``n_rb`` closest hyperplanes of its linear region and to the closest decision
  hyperplanes are pushed above ``gamma_rb`` and ``gamma_db``.
- ``ibp_linf``, ``ibp_l2``: interval bound propagation (Gowal et al., 2018). The
  worst-case logits inside the eps-ball enter the loss ``kappa * CE(z) + (1 - kappa) *
  CE(z_worst)``; eps ramps up from 0 and kappa down from 1 after a warm-up.

Networks are read as the one network description (:func:`robcurves.network.from_keras`
with ``live=True``: its layers hold the model's own variables). Each layer evaluates
itself, pushes directions through its linear region (:meth:`Layer.jvp`, for MMR) and
propagates intervals (:func:`robcurves.network.interval_bounds`, for IBP), so any graph the
description reads (Conv2D, Dense, ReLU, Flatten, Reshape, Add, pooling) trains.

Determinism: batches are shuffled by a NumPy generator seeded with ``seed``; PGD random
starts use the stateless random numbers of :mod:`robcurves.backend`, seeded with ``(seed, step)``; the global
Keras seed is set too, and TensorFlow's op determinism is on while training (option
``deterministic``). Given the same initial weights, the same call gives the same
weights (on the same machine and TensorFlow build).

The option defaults follow the original papers (Croce et al.'s README for MNIST:
lambda 0.5, gamma = 2 eps, ae_frac 0.5). On 8x8 digits (lenet_small, 40 epochs, batch
64, Adam 2e-3) the zoo whose curves cross visibly is: ``at_linf`` eps 0.1, ``at_l2``
eps 1.0, ``mmr_at_linf`` eps 0.1 with lmbd 4 and gamma_rb = gamma_db = 0.3,
``mmr_at_l2`` eps 1.0 with lmbd 4 and gammas 3.0, ``ibp_linf`` eps 0.2, ``ibp_l2``
eps 0.25.

The package, one concept per module:

- :mod:`.methods` - the registry :data:`TRAINING_METHODS` and option defaults (no TensorFlow);
- :mod:`.forward` - the live network description and its forward pass;
- :mod:`.pgd` - the training-time PGD (the norm's ``keras.ops`` geometry: random start,
  ascent direction, projection);
- :mod:`.ibp` - interval bounds and the IBP margins;
- :mod:`.mmr` - Croce et al.'s region and decision-boundary terms;
- :mod:`.loop` - the losses, the schedules and :func:`train_model`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from robcurves.training.forward import network_of  # noqa: E402
from robcurves.training.ibp import interval_bounds, margin_upper_bounds  # noqa: E402
from robcurves.training.loop import train_model  # noqa: E402
from robcurves.training.methods import (  # noqa: E402
    COMMON_DEFAULTS, TRAINING_METHODS, Method, get_method, known_methods, method_defaults,
    resolve_options,
)
from robcurves.training.pgd import pgd_attack  # noqa: E402

__all__ = [
    "COMMON_DEFAULTS", "TRAINING_METHODS", "Method", "get_method", "interval_bounds",
    "known_methods", "margin_upper_bounds", "method_defaults", "network_of", "pgd_attack",
    "resolve_options", "train_model",
]
