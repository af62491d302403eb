"""One network description for every stage: a feed-forward ReLU network as a small graph of layers.

- :class:`Network` (:mod:`.graph`): topologically ordered nodes, input NHWC ``(H, W, C)``
  in a box ``bounds``, logits out;
- layer types (:mod:`.layers`): :class:`Dense`, :class:`Conv2D`, :class:`ReLU`,
  :class:`Flatten`, :class:`Reshape`, :class:`Add`; each evaluates itself on ``keras.ops``
  (and in float64 NumPy), propagates intervals and linear bounds, and emits its MILP rows;
- bounds (:mod:`.bounds`): :class:`Domain`, :func:`interval_bounds`, :func:`backward`,
  :func:`concretize`, :func:`linear_bounds`, :func:`crown_bounds`;
- readers: :func:`from_keras` (:mod:`.keras_io`).
"""

from robcurves.network.bounds import (
    Domain, backward, concretize, crown_bounds, identity_spec, interval_bounds, linear_bounds,
)
from robcurves.network.graph import Network, Node
from robcurves.network.keras_io import UnsupportedLayer, check_against, from_keras
from robcurves.network.layers import (
    Add, AffineLayer, Conv2D, Dense, Flatten, Layer, ReLU, Reshape, conv2d_matrix,
)

__all__ = [
    "Add", "AffineLayer", "Conv2D", "Dense", "Domain", "Flatten", "Layer", "Network", "Node", "ReLU", "Reshape",
    "UnsupportedLayer", "backward", "check_against", "concretize", "conv2d_matrix", "crown_bounds", "from_keras",
    "identity_spec", "interval_bounds", "linear_bounds",
]
