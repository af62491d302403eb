"""Run foolbox 3.3.4 attacks on an exported network; write the adversarial inputs.

Runs in the foolbox venv (``bash benchmarks/foolbox_venv.sh``), never in the project's
own venv: foolbox's TensorFlow backend needs NumPy < 2. ``benchmarks/attacks.py``
exports the network as a plain layer list with its weights (no Keras file, so the two
TensorFlow versions never have to agree on a format) and reads back, per attack, the
clipped adversarial inputs and the attack's own wall time. It verifies and measures
every distance itself, with the project's model, so nothing here is trusted.

Usage: python foolbox_worker.py IN.npz OUT.npz ATTACK [ATTACK ...]
Attacks: linf_fmn, linf_pgd_bisection, l2_fmn, l2_cw, l2_ddn, l1_fmn, l1_ead.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import eagerpy as ep  # noqa: E402
import foolbox as fb  # noqa: E402


class LayerNet:
    """The exported network as plain TensorFlow ops (NHWC)."""

    def __init__(self, spec: list[dict], arrays) -> None:
        self.layers = []
        for i, layer in enumerate(spec):
            kind = layer["kind"]
            w = tf.constant(arrays[f"w{i}"]) if f"w{i}" in arrays.files else None
            b = tf.constant(arrays[f"b{i}"]) if f"b{i}" in arrays.files else None
            self.layers.append((kind, layer, w, b))

    def __call__(self, x):
        for kind, layer, w, b in self.layers:
            if kind == "conv2d":
                s = layer["strides"]
                x = tf.nn.conv2d(x, w, strides=[1, s[0], s[1], 1], padding=layer["padding"].upper()) + b
            elif kind == "dense":
                x = tf.matmul(x, w) + b
            elif kind == "relu":
                x = tf.nn.relu(x)
            elif kind == "flatten":
                x = tf.reshape(x, (tf.shape(x)[0], -1))
            elif kind == "reshape":
                x = tf.reshape(x, (tf.shape(x)[0], *layer["target"]))
            elif kind in ("max_pooling2d", "average_pooling2d"):
                pool = tf.nn.max_pool2d if kind == "max_pooling2d" else tf.nn.avg_pool2d
                x = pool(x, layer["pool"], layer["strides"], layer["padding"].upper())
            elif kind == "global_average_pooling2d":
                x = tf.reduce_mean(x, axis=[1, 2])
            else:
                raise ValueError(f"unknown layer kind {kind!r}")
        return x


class _PerPointLinfPGD(fb.attacks.LinfPGD):
    """foolbox's LinfPGD, with the random start written so that eps may be per point
    (foolbox draws uniform(-eps, eps) and clips with eps as bounds, which eagerpy's
    TensorFlow backend only takes for a scalar eps); the arithmetic is unchanged."""

    def get_random_start(self, x0, epsilon):
        return x0 + ep.uniform(x0, x0.shape, -1.0, 1.0) * epsilon

    def project(self, x, x0, epsilon):
        return x0 + ep.minimum(ep.maximum(x - x0, -epsilon), epsilon)


def pgd_bisection(fmodel, x, y, eps_max: float, bisection_steps: int = 10, bracket_steps: int = 12):
    """foolbox's LinfPGD (40 steps, random start) inside a batched bisection over eps.

    foolbox's gradient-descent attacks only use eps arithmetically (step size, random
    start, projection), so a per-point eps of shape (N, 1, 1, 1) works unchanged.
    """
    attack = _PerPointLinfPGD()
    crit = fb.criteria.Misclassification(y)
    n = len(x)
    lo = np.zeros(n, np.float32)
    hi = np.full(n, np.inf, np.float32)
    best = x.numpy().copy()
    eps = np.full(n, eps_max / 32, np.float32)

    def attempt(e):
        et = ep.astensor(tf.constant(e.reshape(-1, 1, 1, 1)))
        xa = attack.run(fmodel, ep.astensor(x), crit, epsilon=et)
        xa = xa.raw if hasattr(xa, "raw") else xa
        pred = np.argmax(fmodel(xa).numpy(), axis=1)
        return xa.numpy(), pred != y.numpy()

    for _ in range(bracket_steps):
        todo = ~np.isfinite(hi) & (lo < eps_max)
        if not todo.any():
            break
        e = np.where(lo > 0, np.minimum(2 * lo, eps_max), eps).astype(np.float32)
        xa, ok = attempt(e)
        d = np.abs(xa - x.numpy()).reshape(n, -1).max(1)
        take = todo & ok & (d < hi)
        best[take], hi[take] = xa[take], d[take]
        lo = np.where(todo & ~ok, e, lo)
    for _ in range(bisection_steps):
        todo = np.isfinite(hi)
        if not todo.any():
            break
        e = (0.5 * (lo + np.where(todo, hi, 0))).astype(np.float32)
        xa, ok = attempt(np.where(todo, e, eps_max).astype(np.float32))
        d = np.abs(xa - x.numpy()).reshape(n, -1).max(1)
        take = todo & ok & (d < hi)
        best[take], hi[take] = xa[take], d[take]
        lo = np.where(todo & ~ok, e, lo)
    return best


def make_attack(name: str, args: dict):
    steps = int(args.get("steps", 0))
    if name == "linf_fmn":
        return fb.attacks.LInfFMNAttack(**({"steps": steps} if steps else {}))
    if name == "l2_fmn":
        return fb.attacks.L2FMNAttack(**({"steps": steps} if steps else {}))
    if name == "l1_fmn":
        return fb.attacks.L1FMNAttack(**({"steps": steps} if steps else {}))
    if name == "l2_ddn":
        return fb.attacks.DDNAttack(**({"steps": steps} if steps else {}))
    if name == "l2_cw":
        return fb.attacks.L2CarliniWagnerAttack(binary_search_steps=int(args.get("binary_search_steps", 9)),
                                                steps=steps or 1000)
    if name == "l1_ead":
        return fb.attacks.EADAttack(binary_search_steps=int(args.get("binary_search_steps", 9)), steps=steps or 1000)
    raise ValueError(f"unknown foolbox attack {name!r}")


def main(argv: list[str]) -> int:
    src, dst, *attacks = argv
    data = np.load(src, allow_pickle=False)
    spec = json.loads(str(data["spec"]))
    options = json.loads(str(data["options"]))
    net = LayerNet(spec["layers"], data)
    fmodel = fb.TensorFlowModel(net, bounds=tuple(spec["bounds"]))
    x = tf.constant(data["x"])
    y = tf.constant(data["y"].astype(np.int64))
    batch = int(options.get("batch_size", 256))
    out = {}
    timing = {}
    for name in attacks:
        args = options.get(name, {})
        parts = []
        t0 = time.perf_counter()
        for i in range(0, len(data["x"]), batch):
            xb, yb = x[i:i + batch], y[i:i + batch]
            if name == "linf_pgd_bisection":
                parts.append(pgd_bisection(fmodel, xb, yb, float(spec["bounds"][1] - spec["bounds"][0])))
            else:
                attack = make_attack(name, args)
                _, clipped, _ = attack(fmodel, xb, yb, epsilons=None)
                parts.append(clipped.numpy())
        timing[name] = time.perf_counter() - t0
        out[name] = np.concatenate(parts).astype(np.float32)
        print(f"foolbox {name}: {len(data['x'])} points in {timing[name]:.1f}s", file=sys.stderr, flush=True)
    timing["_versions"] = {"foolbox": fb.__version__, "tensorflow": tf.__version__, "numpy": np.__version__}
    # Gradients per point each attack is configured to spend (its steps, times its
    # binary-search steps for CW and EAD); pgd_bisection: 40 PGD steps per radius tried.
    grads = {}
    for name in attacks:
        if name == "linf_pgd_bisection":
            grads[name] = 40 * (12 + 10)
            continue
        att = make_attack(name, options.get(name, {}))
        steps = int(getattr(att, "steps", 0) or 0)
        # FMN's binary search only places an init_attack's start (none here): one gradient a step.
        searches = 1 if name.endswith("_fmn") else int(getattr(att, "binary_search_steps", 1) or 1)
        grads[name] = steps * searches
    timing["_gradients_per_point"] = grads
    np.savez_compressed(dst, timing=np.array(json.dumps(timing)), **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
