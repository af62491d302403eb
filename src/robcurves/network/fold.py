"""Folding elementwise affine layers (BatchNorm, input normalisation) into their neighbours.

Works on the reader's node list ``[(layer, input_ids), ...]`` (node ``k`` is entry
``k - 1``; node 0 the input). A :class:`Scale` ``x * s + o`` is folded, exactly, into

- the Conv2D or Dense before it, when that layer feeds nothing else (BatchNorm after a
  conv): ``W' = W s``, ``b' = b s + o`` per output channel;
- the Dense after it (possibly through a Flatten), or the Conv2D after it when ``s`` and
  ``o`` are per channel and the conv has no padding or ``o`` is zero (zero padding happens
  after the normalisation, so an offset cannot move into a padded conv's bias).

A Scale that fits neither stays a layer of its own (it is affine: every stage handles it).
Folded weights are stored in float32, the precision the model is run in.
"""

from __future__ import annotations

import numpy as np

from robcurves.network import layers as L


def _users(items, out: int) -> dict[int, list[int]]:
    """Consumers of every node, among the nodes the output depends on (folded ones are dead)."""
    live = {out}
    for k in range(out, 0, -1):
        if k in live:
            live.update(items[k - 1][1])
    users: dict[int, list[int]] = {}
    for k, (_, ins) in enumerate(items, start=1):
        if k in live:
            for i in ins:
                users.setdefault(i, []).append(k)
    return users


def _per_channel(layer: L.Scale, n_channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(s, o)`` as (C,) vectors when they are constant over the spatial axes, else None."""
    s, o = layer.full("s"), layer.full("b")
    s2, o2 = s.reshape(-1, n_channels), o.reshape(-1, n_channels)
    if np.all(s2 == s2[0]) and np.all(o2 == o2[0]):
        return s2[0], o2[0]
    return None


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _fold_after(prev: L.Layer, sc: L.Scale):
    """``Scale(prev(x))`` as one layer, or None."""
    if prev.live:
        return None
    if isinstance(prev, L.Scale):  # two scalings in a row (Sub then Div)
        s1, o1, s2, o2 = prev.full("s"), prev.full("b"), sc.full("s"), sc.full("b")
        from robcurves.network.keras_io import _compact

        return L.Scale(prev.in_shape, _compact(s1 * s2), _compact(o1 * s2 + o2), name=prev.name)
    if isinstance(prev, L.Dense):
        s, o = sc.full("s"), sc.full("b")
        W, b = prev.numpy("W"), (prev.numpy("b") if "b" in prev.params else 0.0)
        return L.Dense(prev.in_shape, _f32(W * s[None, :]), _f32(b * s + o), name=prev.name)
    if isinstance(prev, L.Conv2D):
        so = _per_channel(sc, prev.out_shape[2])
        if so is None:
            return None
        s, o = so
        W, b = prev.numpy("W"), (prev.numpy("b") if "b" in prev.params else 0.0)
        return L.Conv2D(prev.in_shape, _f32(W * s), _f32(b * s + o), prev.strides, prev.pads, name=prev.name)
    return None


def _fold_before(sc: L.Scale, nxt: L.Layer, flat: bool):
    """``nxt(Scale(x))`` (through a Flatten if ``flat``) as one layer, or None."""
    if nxt.live:
        return None
    if isinstance(nxt, L.Dense):
        s, o = sc.full("s").reshape(-1), sc.full("b").reshape(-1)
        W, b = nxt.numpy("W"), (nxt.numpy("b") if "b" in nxt.params else np.zeros(nxt.out_shape))
        return L.Dense(nxt.in_shape, _f32(s[:, None] * W), _f32(b + o @ W), name=nxt.name)
    if isinstance(nxt, L.Conv2D) and not flat:
        so = _per_channel(sc, nxt.in_shape[2])
        if so is None:
            return None
        s, o = so
        if any(nxt.pads) and np.any(o != 0):
            return None
        W, b = nxt.numpy("W"), (nxt.numpy("b") if "b" in nxt.params else np.zeros(nxt.out_shape[2]))
        return L.Conv2D(nxt.in_shape, _f32(W * s[None, None, :, None]),
                        _f32(b + np.einsum("hwio,i->o", W, o)), nxt.strides, nxt.pads, name=nxt.name)
    return None


def _fold_pad(pad: L.Pad2D, nxt: L.Layer):
    """``Conv2D(Pad2D(x))`` as one Conv2D (the pads add up), or None."""
    if isinstance(nxt, L.Conv2D) and not nxt.live and min(pad.pads) >= 0:
        pads = tuple(p + q for p, q in zip(pad.pads, nxt.pads))
        return L.Conv2D(pad.in_shape, nxt.params["W"], nxt.params.get("b"), nxt.strides, pads, name=nxt.name)
    return None


def fold_scales(items: list, out: int, folded: list[str]) -> tuple[list, int]:
    """Fold every Scale that can be folded; returns the new node list and output id.

    Nodes made redundant stay in the list unused (the reader drops them); ``folded`` gets
    one line per fold.
    """
    items = list(items)
    changed = True
    while changed:
        changed = False
        users = _users(items, out)
        for k, (layer, ins) in enumerate(items, start=1):
            if isinstance(layer, L.Pad2D) and len(users.get(k, [])) == 1 and k != out:
                u = users[k][0]
                new = _fold_pad(layer, items[u - 1][0])
                if new is not None:
                    items[u - 1] = (new, ins)
                    folded.append(f"{layer.name} into {new.name} after it")
                    changed = True
                    break
            if not isinstance(layer, L.Scale) or k not in users and k != out:
                continue
            p = ins[0]
            # into the layer before it
            if p > 0 and users.get(p) == [k]:
                new = _fold_after(items[p - 1][0], layer)
                if new is not None:
                    items[p - 1] = (new, items[p - 1][1])
                    items = _redirect(items, k, p)
                    out = p if out == k else out
                    folded.append(f"{layer.name} into {items[p - 1][0].name} before it")
                    changed = True
                    break
            # into the layer after it (through one Flatten)
            us = users.get(k, [])
            if len(us) == 1 and k != out:
                u = us[0]
                nxt, flat = items[u - 1][0], False
                if isinstance(nxt, L.Flatten) and len(users.get(u, [])) == 1 and u != out:
                    flat, fl = True, u
                    u = users[u][0]
                    nxt = items[u - 1][0]
                new = _fold_before(layer, nxt, flat)
                if new is not None:
                    items[u - 1] = (new, items[u - 1][1])
                    if flat:
                        items[fl - 1] = (L.Flatten(layer.in_shape, name=items[fl - 1][0].name), (p,))
                    else:
                        items[u - 1] = (new, (p,))
                    folded.append(f"{layer.name} into {new.name} after it")
                    changed = True
                    break
    return items, out


def _redirect(items: list, old: int, new: int) -> list:
    return [(layer, tuple(new if i == old else i for i in ins)) for layer, ins in items]
