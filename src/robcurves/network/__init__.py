"""One network description for every stage: a feed-forward ReLU network as a small graph of layers.

- :class:`Network` (:mod:`.graph`): topologically ordered nodes, input NHWC ``(H, W, C)``
  in a box ``bounds``, logits out;
- layer types (:mod:`.layers`): :class:`Dense`, :class:`Conv2D`, :class:`ReLU`,
  :class:`Flatten`, :class:`Reshape`, :class:`Add`, :class:`Scale` (elementwise affine: folded
  BatchNorm and normalisation that could not be folded), :class:`AveragePooling2D`,
  :class:`GlobalAveragePooling2D`, :class:`MaxPooling2D`; each evaluates itself on ``keras.ops``
  (and in float64 NumPy), propagates intervals and linear bounds, and emits its MILP rows;
- bounds (:mod:`.bounds`): :class:`Domain`, :func:`interval_bounds`, :func:`backward`,
  :func:`concretize`, :func:`linear_bounds`, :func:`crown_bounds`;
- readers: :func:`from_keras` (:mod:`.keras_io`), :func:`from_onnx` (:mod:`.onnx_io`).
"""

from robcurves.network.bounds import (
    Domain, backward, concretize, crown_bounds, identity_spec, interval_bounds, linear_bounds,
)
from robcurves.network.graph import Network, Node
from robcurves.network.keras_io import UnsupportedLayer, check_against, from_keras, to_keras
from robcurves.network.onnx_io import from_onnx
from robcurves.network.layers import (
    Add, AffineLayer, AveragePooling2D, Conv2D, Dense, Flatten, GlobalAveragePooling2D, Layer, MaxPooling2D, ReLU,
    Pad2D, Reshape, Scale, conv2d_matrix,
)

__all__ = [
    "Add", "AffineLayer", "AveragePooling2D", "Conv2D", "Dense", "GlobalAveragePooling2D", "MaxPooling2D", "Pad2D", "Scale", "Domain", "Flatten", "Layer", "Network", "Node", "ReLU", "Reshape",
    "UnsupportedLayer", "backward", "check_against", "concretize", "conv2d_matrix", "crown_bounds", "from_keras", "from_onnx",
    "identity_spec", "interval_bounds", "linear_bounds", "to_keras",
]
