"""The training loop: each method's loss, its per-step schedule, and :func:`train_model`.

Determinism: batches are shuffled by a NumPy generator seeded with ``seed``; PGD random
starts are stateless, seeded with ``(seed, step)``; the global Keras seed is set too, and
TensorFlow's op determinism is on while training (option ``deterministic``).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Any, Callable, Mapping

import keras
import numpy as np
import tensorflow as tf

from robcurves.network import Network
from robcurves.progress import Progress
from robcurves.training.forward import _forward, network_of
from robcurves.training.ibp import _ibp_margin_upper
from robcurves.training.methods import Method, get_method, resolve_options
from robcurves.training.mmr import _mmr_terms, _n_hidden
from robcurves.training.pgd import _pgd


def _ce(logits, y):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)


def _build_loss(method: Method, net: Network, eps: float | None, opts: Mapping[str, Any], n_classes: int):
    """loss(x, y, sched) -> (objective, plain cross-entropy, logits on the clean batch)."""
    logits_fn = lambda z: _forward(net, z)[0]  # noqa: E731
    fam, norm = method.family, method.norm

    def mixed_batch(x, y, sched):
        n_adv = tf.cast(tf.math.floor(float(opts["ae_frac"]) * tf.cast(tf.shape(x)[0], tf.float32)), tf.int32)
        x_adv = _pgd(logits_fn, x[:n_adv], y[:n_adv], norm, tf.constant(float(eps)), int(opts["pgd_steps"]),
                     tf.constant(float(opts["pgd_step_size"])), bool(opts["pgd_random_start"]), sched["seed"])
        return tf.concat([x_adv, x[n_adv:]], axis=0)

    if fam == "st":
        def loss(x, y, sched):
            z = logits_fn(x)
            ce = tf.reduce_mean(_ce(z, y))
            return ce, ce, z
    elif fam == "at":
        def loss(x, y, sched):
            z = logits_fn(mixed_batch(x, y, sched))
            ce = tf.reduce_mean(_ce(z, y))
            return ce, ce, z
    elif fam == "mmr_at":
        n_db = int(opts["n_db"]) if opts["n_db"] is not None else n_classes

        def loss(x, y, sched):
            xm = mixed_batch(x, y, sched)
            z, rb, db = _mmr_terms(net, xm, y, norm, sched["n_rb"], n_db,
                                   float(opts["gamma_rb"]), float(opts["gamma_db"]))
            ce = tf.reduce_mean(_ce(z, y))
            reg = sched["frac_reg"] * float(opts["lmbd"]) * (tf.reduce_mean(rb) + tf.reduce_mean(db))
            return ce + reg, ce, z
    elif fam == "ibp":
        def loss(x, y, sched):
            z = logits_fn(x)
            ce = tf.reduce_mean(_ce(z, y))
            worst = _ibp_margin_upper(net, x, y, norm, sched["eps"])
            ce_worst = tf.reduce_mean(_ce(worst, y))
            kappa = sched["kappa"]
            return kappa * ce + (1.0 - kappa) * ce_worst, ce, z
    else:  # pragma: no cover - TRAINING_METHODS is closed
        raise AssertionError(fam)
    return loss


def _schedule(method: Method, opts, eps, epoch: int, epochs: int, step: int, total_steps: int,
              n_hidden: int, seed: int) -> dict[str, tf.Tensor]:
    """Per-step scalars: regulariser weight, n_rb, IBP eps and kappa, PGD seed."""
    frac_reg, n_rb, eps_t, kappa = 1.0, 1, 0.0, 1.0
    if method.family == "mmr_at":
        ramp = max(1.0, float(opts["reg_ramp_frac"]) * epochs)
        frac_reg = min((epoch + 1) / ramp, 1.0)
        n0, n1 = float(opts["n_rb_frac_start"]) * n_hidden, float(opts["n_rb_frac_end"]) * n_hidden
        n_rb = int(min(n_hidden, max(1, round(n0 + (n1 - n0) * (epoch + 1) / epochs))))
    if method.family == "ibp":
        warm = float(opts["warmup_frac"]) * total_steps
        ramp = float(opts["ramp_frac"]) * total_steps
        t = 0.0 if step < warm else (1.0 if ramp <= 0 else min((step - warm) / ramp, 1.0))
        eps_t = t * float(eps) * float(opts["eps_train_factor"])
        kappa = 1.0 - t * (1.0 - float(opts["kappa_final"]))
    return {
        "frac_reg": tf.constant(frac_reg, tf.float32),
        "n_rb": tf.constant(n_rb, tf.int32),
        "eps": tf.constant(eps_t, tf.float32),
        "kappa": tf.constant(kappa, tf.float32),
        "seed": tf.constant([seed, step], tf.int64),
    }


@contextlib.contextmanager
def _op_determinism(enabled: bool):
    """Deterministic TF kernels inside the block; the previous process-wide state after it.

    Enabling it costs nothing measurable here (CPU, small nets) but makes unseeded random
    ops raise, so it is not left switched on for code that runs later in the process.
    """
    try:
        from tensorflow.python.framework import config as tf_config
        before = tf_config.is_op_determinism_enabled()
    except (ImportError, AttributeError):  # pragma: no cover - other TF versions
        tf_config, before = None, None
    if enabled:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if enabled and before is False and tf_config is not None:
            tf_config.disable_op_determinism()


def train_model(
    model: keras.Model,
    train,
    method: str,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    eps: float | None = None,
    log: Callable[[str], None] | None = None,
    **method_options: Any,
) -> dict[str, Any]:
    """Train ``model`` in place on ``train`` (a :class:`robcurves.data.Dataset`) with ``method``.

    ``eps`` is the training radius in the method's norm (linf or l2, inputs in [0, 1]);
    ``st`` takes none. ``method_options`` are the method's options (see
    :func:`method_defaults`). Adam with ``learning_rate`` (divided by 10 after
    ``lr_drop_frac`` of the epochs). ``log`` gets one line per epoch.

    Returns a JSON-ready dict for the sidecar's ``made_by``: ``kind`` ("train"),
    ``method``, ``norm``, ``eps``, all settings and resolved options, ``train_loss``
    (mean cross-entropy on the clean training set after training), ``train_accuracy``,
    ``history`` (per epoch: mean objective, mean cross-entropy on the training batches,
    batch accuracy), ``time_s`` and versions.
    """
    m = get_method(method)
    opts = resolve_options(method, eps, method_options)
    x_all = np.asarray(train.x, dtype=np.float32)
    y_all = np.asarray(train.y, dtype=np.int64)
    if x_all.ndim != 4 or len(x_all) != len(y_all) or len(y_all) == 0:
        raise ValueError(f"train must hold a non-empty NHWC batch with labels, got x {x_all.shape}, y {y_all.shape}")
    model_shape = tuple(int(s) for s in model.inputs[0].shape[1:])
    if tuple(x_all.shape[1:]) != model_shape:
        raise ValueError(
            f"data of shape (H, W, C) = {x_all.shape[1:]} does not fit the model's input shape {model_shape}")
    for name, val in (("epochs", epochs), ("batch_size", batch_size)):
        if int(val) < 1:
            raise ValueError(f"{name} must be at least 1, got {val!r}")
    if not float(learning_rate) > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    epochs, batch_size, seed = int(epochs), int(batch_size), int(seed)
    n_classes = int(model.outputs[0].shape[-1])
    if y_all.max() >= n_classes or y_all.min() < 0:
        raise ValueError(f"labels must lie in 0..{n_classes - 1} for a model with {n_classes} logits")

    with _op_determinism(bool(opts["deterministic"])):
        return _train(model, train, m, opts, x_all, y_all, n_classes, epochs, batch_size, float(learning_rate),
                      seed, eps, log)


def _train(model, train, m: Method, opts, x_all, y_all, n_classes, epochs, batch_size, learning_rate, seed,
           eps, log) -> dict[str, Any]:
    method = m.name
    keras.utils.set_random_seed(seed)
    net = network_of(model)
    n_hidden = _n_hidden(net)
    loss_fn = _build_loss(m, net, eps, opts, n_classes)

    optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate))
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(reduce_retracing=True)
    def train_step(x, y, sched):
        with tf.GradientTape() as tape:
            obj, ce, z = loss_fn(x, y, sched)
        grads = tape.gradient(obj, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return obj, ce, tf.reduce_mean(tf.cast(tf.argmax(z, axis=1) == y, tf.float32))

    rng = np.random.default_rng(seed)
    n = len(y_all)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    drop_epoch = int(math.ceil(float(opts["lr_drop_frac"]) * epochs))
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    step = 0
    # One line per epoch (work done, rate, ETA, loss, accuracy): to ``log`` in a job, a bar on a terminal.
    bar = Progress(epochs, f"train {method}", unit="epochs", log=log, every_s=0.0,
                   enabled=log is not None or sys.stderr.isatty())
    for epoch in range(epochs):
        dropped = epoch >= drop_epoch and opts["lr_drop_frac"] < 1.0
        optimizer.learning_rate.assign(float(learning_rate) * (0.1 if dropped else 1.0))
        perm = rng.permutation(n)
        sums = np.zeros(3)
        for b in range(steps_per_epoch):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            sched = _schedule(m, opts, eps, epoch, epochs, step, total, n_hidden, seed)
            obj, ce, acc = train_step(tf.constant(x_all[idx]), tf.constant(y_all[idx]), sched)
            obj, ce, acc = float(obj), float(ce), float(acc)
            if not (math.isfinite(obj) and math.isfinite(ce)):
                raise FloatingPointError(f"{method}: the loss became {obj} in epoch {epoch + 1}, step {step}")
            sums += np.array([obj, ce, acc]) * len(idx)
            step += 1
        rec = dict(zip(("objective", "cross_entropy", "batch_accuracy"), (sums / n).round(6).tolist()))
        history.append({"epoch": epoch + 1, **rec})
        bar.update(1, f"loss {rec['objective']:.4f} (cross-entropy {rec['cross_entropy']:.4f}), accuracy "
                      f"{rec['batch_accuracy']:.4f}, {n * (epoch + 1) / bar.elapsed:.0f} samples/s")
    bar.close()
    elapsed = time.perf_counter() - start

    logits = np.concatenate([model(x_all[i:i + 1024], training=False).numpy() for i in range(0, n, 1024)])
    ce_final = float(np.mean(_ce(tf.constant(logits), tf.constant(y_all)).numpy()))
    acc_final = float(np.mean(logits.argmax(axis=1) == y_all))
    return {
        "kind": "train",
        "method": m.name,
        "family": m.family,
        "norm": m.norm.name if m.norm is not None else None,
        "eps": float(eps) if eps is not None else None,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": float(learning_rate),
        "optimizer": "adam",
        "seed": seed,
        "options": {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in opts.items()},
        "n_train": int(n),
        "train_dataset": getattr(train, "name", None),
        "train_sha256": getattr(train, "meta", {}).get("sha256") if hasattr(train, "meta") else None,
        "train_loss": ce_final,
        "train_accuracy": acc_final,
        "history": history,
        "time_s": round(elapsed, 3),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }
