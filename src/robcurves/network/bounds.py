"""Bounds on every node of a :class:`~robcurves.network.graph.Network` over an input domain.

One interval propagator (:func:`interval_bounds`) and one linear (CROWN) propagator
(:func:`backward`, :func:`concretize`, :func:`linear_bounds`, :func:`crown_bounds`), both on
``keras.ops`` with a dtype parameter (float64 by default; IBP training uses float32 and
differentiates through them).

The domain (:class:`Domain`) is a batch of boxes, optionally intersected with an l_p ball
(linf, l2 or l1) of radius ``eps`` around ``x0``; the box already includes the input
bounds and, since ``|x_i - x0_i| <= ||x - x0||_p``, the ball's enclosing box.

Soundness: every bound holds for the network in exact arithmetic; float64 rounding is
negligible next to the float32 model's own rounding, which callers that certify must
account for separately (the exact stage re-checks every witness in float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from robcurves.network.graph import Network
from robcurves.network.layers import dtype_of
from robcurves.network.xp import is_numpy, xp
from robcurves.norms import Norm, parse_norm

Box = tuple[Any, Any]


@dataclass
class Domain:
    """Inputs ``x`` with ``lo <= x <= hi`` and, if ``norm`` is set, ``||x - x0||_norm <= eps``.

    ``lo``, ``hi``, ``x0``: tensors of shape ``(batch, *input_shape)``; ``eps``: ``(batch,)``,
    in the norm ``norm``.
    """

    lo: Any
    hi: Any
    x0: Any = None
    norm: Norm | None = None
    eps: Any = None

    @classmethod
    def ball(cls, x0, norm: "str | Norm", eps, bounds: tuple[float, float] = (0.0, 1.0),
             dtype: str = "float64") -> "Domain":
        """The ``norm`` ball of radius ``eps`` (scalar or one per row) around ``x0``, within ``bounds``.

        NumPy ``x0`` gives a NumPy domain (every bound computed on it runs in NumPy), a
        tensor a ``keras.ops`` one; ``Domain.ball(...).tensors()`` converts.
        """
        norm = parse_norm(norm)
        ops = xp(x0, eps)
        x0 = _tensor(x0, dtype, ops)
        b = x0.shape[0] if x0.shape[0] is not None else ops.shape(x0)[0]
        eps = _tensor(eps, dtype, ops)
        if len(eps.shape) == 0:
            eps = ops.ones((b,), dtype=dtype) * eps
        r = ops.reshape(eps, (-1,) + (1,) * (len(x0.shape) - 1))
        lo = ops.maximum(x0 - r, bounds[0])
        hi = ops.minimum(x0 + r, bounds[1])
        return cls(lo, hi, x0, norm, eps)

    @classmethod
    def box(cls, lo, hi, dtype: str = "float64") -> "Domain":
        ops = xp(lo, hi)
        return cls(_tensor(lo, dtype, ops), _tensor(hi, dtype, ops))

    def tensors(self) -> "Domain":
        """The same domain on ``keras.ops`` tensors."""
        from keras import ops

        t = lambda v: None if v is None else ops.convert_to_tensor(v, dtype=self.dtype)  # noqa: E731
        return Domain(t(self.lo), t(self.hi), t(self.x0), self.norm, t(self.eps))

    @property
    def ops(self):
        return xp(self.lo)

    @property
    def dtype(self) -> str:
        return dtype_of(self.lo)

    @property
    def has_ball(self) -> bool:
        """A ball that the box does not already describe (l2 or l1)."""
        return self.norm is not None and not math.isinf(self.norm.p)


def _tensor(v, dtype: str, ops):
    """``v`` in the namespace ``ops`` and ``dtype``; Python and NumPy numbers are converted
    without a float32 detour."""
    if isinstance(v, (int, float, np.ndarray, np.number, list, tuple)):
        a = np.asarray(v, dtype=dtype)
        return a if is_numpy(ops) else ops.convert_to_tensor(a, dtype=dtype)
    return ops.cast(v, dtype)


def _tail(x) -> tuple[int, ...]:
    return tuple(range(2, len(x.shape)))


def _intersect(a: Box, b: Box | None) -> Box:
    if b is None:
        return a
    ops = xp(a[0], b[0])
    return ops.maximum(a[0], b[0]), ops.minimum(a[1], b[1])


# ------------------------------------------------------------------------ interval

def interval_bounds(net: Network, domain: Domain, given: Mapping[int, Box] | None = None) -> list[Box]:
    """Interval arithmetic through the graph: ``(lo, hi)`` of every node, shaped ``(batch, *shape)``.

    With an l2/l1 ball, the affine layer that first sees the input (through reshapes) is
    bounded by the ball as well: ``L(x0) + b +- eps * ||row||_dual``, intersected with the
    box's interval. ``given`` (node -> box) is intersected with what is computed there
    (e.g. the bounds of split ReLUs, or tighter bounds from an earlier pass).
    """
    given = given or {}
    ops = domain.ops
    bounds: list[Box] = [_intersect((domain.lo, domain.hi), given.get(0))]
    centres = {0: domain.x0} if domain.has_ball else {}
    for i, node in enumerate(net.nodes[1:], start=1):
        layer = node.layer
        box = layer.interval(*(bounds[j] for j in node.inputs))
        src = node.inputs[0]
        if centres and len(node.inputs) == 1 and src in centres and layer.affine:
            if layer.is_reshape:
                centres[i] = layer.evaluate(centres[src])
            else:
                c = layer.evaluate(centres[src])
                r = ops.expand_dims(layer.dual_norms(domain.norm.dual_p, domain.lo), 0)
                r = ops.reshape(domain.eps, (-1,) + (1,) * len(node.shape)) * r
                box = _intersect(box, (c - r, c + r))
        bounds.append(_intersect(box, given.get(i)))
    return bounds


# -------------------------------------------------------------------------- linear

def backward(net: Network, node: int, A, bounds: Sequence[Box | None],
             alpha: Mapping[int, Any] | None = None, split: Mapping[int, Any] | None = None,
             ) -> tuple[Any, Any]:
    """Back-substitute ``A . z_node`` to the input: ``(A_x, c)`` with ``A . z_node >= A_x . x + c``.

    ``A``: ``(batch, spec, *shape of node)``; ``A_x``: ``(batch, spec, *input_shape)``;
    ``c``: ``(batch, spec)``. The inequality holds for every input whose intermediate values
    lie in ``bounds`` (``bounds[i]`` = ``(lo, hi)`` of node ``i``, needed at the inputs of
    ReLU and MaxPool nodes). ``alpha`` (ReLU node id -> lower slopes in [0, 1], shaped
    ``(batch, *shape)`` or ``(batch, spec, *shape)``) and ``split`` (ReLU node id -> +1
    active / -1 inactive / 0) are passed to those layers (:meth:`ReLU.relaxation`).
    An upper bound of ``A . z`` is minus the lower bound of ``-A . z``.
    """
    alpha = alpha or {}
    split = split or {}
    coef: dict[int, Any] = {int(node): A}
    c = None
    for j in range(int(node), 0, -1):
        Aj = coef.pop(j, None)
        if Aj is None:
            continue
        nd = net.nodes[j]
        layer = nd.layer
        in_b = None
        if layer.needs_bounds:
            in_b = [bounds[i] for i in nd.inputs]
            if any(b is None for b in in_b):
                raise ValueError(f"linear bounds through {layer.kind} {nd.name!r} need bounds on its input")
        a_ins, cj = layer.backward(Aj, in_b, alpha=alpha.get(j), split=split.get(j))
        if cj is not None:
            c = cj if c is None else c + cj
        for i, ai in zip(nd.inputs, a_ins):
            coef[i] = ai if i not in coef else coef[i] + ai
    A_x = coef[0]
    if c is None:
        c = xp(A_x).sum(A_x * 0.0, axis=_tail(A_x))
    return A_x, c


def concretize(A_x, c, domain: Domain):
    """The minimum of ``A_x . x + c`` over the domain, ``(batch, spec)``.

    The tighter (elementwise max) of the box bound ``sum(A+ lo + A- hi)`` and, for an
    l2/l1 ball, the dual-norm bound ``A . x0 - eps ||A||_dual``; both are sound.
    """
    ops = xp(A_x, domain.lo)
    lo, hi = ops.expand_dims(domain.lo, 1), ops.expand_dims(domain.hi, 1)
    t = _tail(A_x)
    low = ops.sum(ops.maximum(A_x, 0.0) * lo + ops.minimum(A_x, 0.0) * hi, axis=t)
    if domain.has_ball:
        q = domain.norm.dual_p
        centre = ops.sum(A_x * ops.expand_dims(domain.x0, 1), axis=t)
        if math.isinf(q):
            dn = ops.max(ops.abs(A_x), axis=t)
        elif q == 1.0:
            dn = ops.sum(ops.abs(A_x), axis=t)
        else:
            dn = ops.sqrt(ops.sum(ops.square(A_x), axis=t))
        low = ops.maximum(low, centre - ops.expand_dims(domain.eps, 1) * dn)
    return low + c


def identity_spec(shape: Sequence[int], batch: int, dtype: str = "float64", units: np.ndarray | None = None,
                  like=None):
    """``C`` of shape ``(batch, k, *shape)`` selecting the units ``units`` (flat indices; all if None).

    A ``keras.ops`` tensor, or a NumPy array when ``like`` is a NumPy array.
    """
    n = int(np.prod(shape))
    units = np.arange(n) if units is None else np.asarray(units, dtype=np.int64)
    C = np.zeros((len(units), n), dtype=dtype)
    C[np.arange(len(units)), units] = 1.0
    C = np.broadcast_to(C.reshape(1, len(units), *shape), (batch, len(units), *shape))
    if like is not None and isinstance(like, np.ndarray):
        return C
    from keras import ops

    return ops.convert_to_tensor(C, dtype=dtype)


def linear_bounds(net: Network, node: int, bounds: Sequence[Box | None], domain: Domain, C=None,
                  alpha: Mapping[int, Any] | None = None, split: Mapping[int, Any] | None = None,
                  which: str = "both"):
    """Linear (CROWN) bounds of ``C . z_node`` over ``domain``: ``(lower, upper)``, each ``(batch, spec)``.

    ``C``: ``(batch, spec, *shape)`` (default: every unit of the node). ``which``:
    ``"both"`` (``C`` and ``-C`` in one pass; an ``alpha`` with a spec axis then covers
    ``2 * spec``: the lower bounds' specs first), ``"lower"`` or ``"upper"`` (the other
    entry is None).
    """
    shape = net.nodes[node].shape
    ops = domain.ops
    if C is None:
        b = domain.lo.shape[0] if domain.lo.shape[0] is not None else ops.shape(domain.lo)[0]
        C = identity_spec(shape, b, domain.dtype, like=domain.lo)
    C = _tensor(C, domain.dtype, ops)
    if which == "lower":
        return concretize(*backward(net, node, C, bounds, alpha, split), domain), None
    if which == "upper":
        return None, -concretize(*backward(net, node, -C, bounds, alpha, split), domain)
    if which != "both":
        raise ValueError(f"which must be 'both', 'lower' or 'upper', got {which!r}")
    s = C.shape[1]
    low = concretize(*backward(net, node, ops.concatenate([C, -C], axis=1), bounds, alpha, split), domain)
    return low[:, :s], -low[:, s:]


def crown_bounds(net: Network, domain: Domain, given: Mapping[int, Box] | None = None,
                 max_specs: int = 4096) -> list[Box]:
    """Bounds of every node: interval arithmetic, tightened by CROWN where bounds matter.

    Node by node in topological order: the interval of the (already tightened) inputs;
    then, at the inputs of ReLU/MaxPool nodes and at the logits, linear bounds by
    back-substitution to the input (adaptive CROWN slopes), intersected with the interval,
    so they are never looser. At ReLU inputs only the units that are unstable (lower < 0 <
    upper) in some row of the batch are recomputed; ``max_specs`` caps the units per pass
    (more are done in chunks). Eager (not for use inside a traced function).
    """
    given = dict(given or {})
    first = interval_bounds(net, domain, given)
    bounds: list[Box | None] = [first[0]]
    targets = set(net.needs_bounds()) | {net.output}
    batch = int(domain.lo.shape[0])
    dt = domain.dtype
    ops = domain.ops
    numpy_side = is_numpy(ops)
    as_np = lambda t: np.asarray(t if numpy_side else ops.convert_to_numpy(t), dtype=np.float64)  # noqa: E731
    for i, node in enumerate(net.nodes[1:], start=1):
        box = _intersect(node.layer.interval(*(bounds[j] for j in node.inputs)), first[i])
        if i in targets and not (node.layer.affine and getattr(node.layer, "is_reshape", False)):
            lo, hi = (as_np(t).reshape(batch, -1).copy() for t in box)
            only_relu = all(net.nodes[u].layer.kind == "relu" for u in net.users[i]) and i != net.output
            units = np.flatnonzero(((lo < 0) & (hi > 0)).any(axis=0)) if only_relu else np.arange(lo.shape[1])
            for start in range(0, len(units), max_specs):
                sel = units[start:start + max_specs]
                C = identity_spec(node.shape, batch, dt, sel, like=domain.lo)
                l_new, u_new = (as_np(t) for t in linear_bounds(net, i, bounds, domain, C))
                lo[:, sel] = np.maximum(lo[:, sel], l_new)
                hi[:, sel] = np.minimum(hi[:, sel], u_new)
            box = tuple(_tensor(a.reshape(batch, *node.shape), dt, ops) for a in (lo, hi))
        bounds.append(box)
    return bounds  # type: ignore[return-value]
