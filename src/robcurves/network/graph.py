"""A feed-forward ReLU network as a small graph of layers (the one description every stage uses).

Nodes are topologically ordered: node 0 is the input (NHWC ``(H, W, C)``), every other
node is a layer (:mod:`robcurves.network.layers`) applied to earlier nodes, and the last
node gives the logits, a vector of ``n_classes``. ``bounds`` is the box the inputs live in.
``meta`` records how the description was made (``source``, ``softmax_removed``, the
folded layers, ...).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from keras import ops

from robcurves.network.layers import Layer, Shape


@dataclass
class Node:
    """One node: ``layer`` applied to the outputs of the nodes ``inputs`` (None for the input node)."""

    layer: Layer | None
    inputs: tuple[int, ...]
    name: str
    shape: Shape


class Network:
    """The network description: topologically ordered :class:`Node` s, input 0, logits last.

    ``layers`` is a list of ``(layer, input_ids)`` in topological order; node ``i + 1`` is
    ``layers[i]`` (node 0 is the input).
    """

    def __init__(self, input_shape: Sequence[int], layers: Sequence[tuple[Layer, Sequence[int]]],
                 bounds: tuple[float, float] = (0.0, 1.0), meta: dict[str, Any] | None = None,
                 name: str = "network", input_name: str = "input") -> None:
        self.input_shape: Shape = tuple(int(s) for s in input_shape)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        if not self.bounds[0] < self.bounds[1]:
            raise ValueError(f"network bounds must be (low, high) with low < high, got {bounds}")
        self.meta: dict[str, Any] = dict(meta or {})
        self.name = name
        self.nodes: list[Node] = [Node(None, (), input_name, self.input_shape)]
        for layer, inputs in layers:
            self.add(layer, inputs)
        if len(self.nodes) < 2:
            raise ValueError("a network needs at least one layer")
        if len(self.output_shape) != 1:
            raise ValueError(f"the network output must be a vector of logits, got shape {self.output_shape}")

    def add(self, layer: Layer, inputs: Sequence[int]) -> int:
        """Append ``layer`` fed by the nodes ``inputs``; returns its node id."""
        inputs = tuple(int(i) for i in inputs)
        n = len(self.nodes)
        if any(i < 0 or i >= n for i in inputs):
            raise ValueError(f"layer {layer.name!r}: inputs {inputs} must be earlier nodes (0..{n - 1})")
        shapes = tuple(self.nodes[i].shape for i in inputs)
        if shapes != layer.in_shapes:
            raise ValueError(f"layer {layer.name!r}: built for input shapes {layer.in_shapes}, fed {shapes}")
        self.nodes.append(Node(layer, inputs, layer.name, layer.out_shape))
        self._users = None
        return n

    # ----------------------------------------------------------------- structure
    @property
    def output(self) -> int:
        return len(self.nodes) - 1

    @property
    def output_shape(self) -> Shape:
        return self.nodes[-1].shape

    @property
    def n_classes(self) -> int:
        return int(self.output_shape[0])

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def users(self) -> list[list[int]]:
        """``users[i]``: the nodes that take node ``i`` as an input."""
        if getattr(self, "_users", None) is None:
            users: list[list[int]] = [[] for _ in self.nodes]
            for j, node in enumerate(self.nodes):
                for i in node.inputs:
                    users[i].append(j)
            self._users = users
        return self._users

    def layer_nodes(self, kind: "str | type | None" = None) -> list[int]:
        """Ids of the nodes whose layer is of ``kind`` (a ``Layer.kind`` string or a class)."""
        out = []
        for i, node in enumerate(self.nodes[1:], start=1):
            if kind is None or (isinstance(kind, str) and node.layer.kind == kind) or \
                    (isinstance(kind, type) and isinstance(node.layer, kind)):
                out.append(i)
        return out

    @property
    def is_chain(self) -> bool:
        """Every node is fed by the one before it (no branches, no Add)."""
        return all(node.inputs == (i - 1,) for i, node in enumerate(self.nodes[1:], start=1))

    def kinds(self) -> Counter:
        return Counter(node.layer.kind for node in self.nodes[1:])

    def needs_bounds(self) -> list[int]:
        """Nodes whose output a relaxed layer (ReLU, MaxPool) takes: where bounds matter."""
        out = set()
        for node in self.nodes[1:]:
            if node.layer.needs_bounds:
                out.update(node.inputs)
        return sorted(out)

    def is_affine_in_input(self, i: int) -> bool:
        """True when node ``i`` is an affine function of the input (no ReLU or MaxPool before it)."""
        todo, seen = [int(i)], set()
        while todo:
            j = todo.pop()
            if j == 0 or j in seen:
                continue
            seen.add(j)
            if not self.nodes[j].layer.affine:
                return False
            todo.extend(self.nodes[j].inputs)
        return True

    def summary(self) -> str:
        lines = [f"{self.name}: input {self.input_shape} in [{self.bounds[0]:g}, {self.bounds[1]:g}], "
                 f"{self.n_classes} logits"]
        for i, node in enumerate(self.nodes[1:], start=1):
            lines.append(f"  {i:3d} {node.layer.kind:<22s} {node.name:<24s} <- {list(node.inputs)} {node.shape}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Network({self.name!r}, input {self.input_shape}, {len(self.nodes) - 1} layers, {self.n_classes} logits)"

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, x, dtype: str | None = None):
        """Logits of a batch ``x`` of shape ``(N, *input_shape)`` on ``keras.ops`` (differentiable).

        NumPy input is converted to ``dtype`` (default float32); a tensor keeps its dtype
        unless ``dtype`` is given.
        """
        return self.activations(x, dtype)[-1]

    __call__ = evaluate

    def activations(self, x, dtype: str | None = None) -> list:
        """The output of every node (node 0: the input) as ``keras.ops`` tensors."""
        if isinstance(x, np.ndarray) or dtype is not None:
            x = ops.convert_to_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x, dtype=dtype or "float32")
            if dtype is not None:
                x = ops.cast(x, dtype)
        vals = [x]
        for node in self.nodes[1:]:
            vals.append(node.layer.evaluate(*(vals[i] for i in node.inputs)))
        return vals

    def evaluate_numpy(self, x: np.ndarray) -> np.ndarray:
        """Logits in float64 NumPy (a reference for the ``keras.ops`` path and for MILP checks)."""
        return self.activations_numpy(x)[-1]

    def activations_numpy(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(x, dtype=np.float64).reshape(-1, *self.input_shape)
        vals = [x]
        for node in self.nodes[1:]:
            vals.append(node.layer.evaluate_numpy(*(vals[i] for i in node.inputs)))
        return vals

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """float32 logits as NumPy, in batches."""
        x = np.asarray(x, dtype=np.float32)
        parts = [np.asarray(ops.convert_to_numpy(self.evaluate(x[i:i + batch_size])), dtype=np.float32)
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_classes), np.float32)

    # ------------------------------------------------------------------ weights
    def constant(self) -> "Network":
        """A copy whose parameters are NumPy constants (live variables read once)."""
        import copy

        from robcurves.network.layers import to_numpy

        out = copy.copy(self)
        out.nodes = []
        for node in self.nodes:
            if node.layer is not None and node.layer.live:
                layer = copy.copy(node.layer)
                layer.params = {k: (v if isinstance(v, np.ndarray) else to_numpy(v).astype(np.float32))
                                for k, v in node.layer.params.items()}
                layer._cache = {}
                node = Node(layer, node.inputs, node.name, node.shape)
            out.nodes.append(node)
        out._users = None
        return out
