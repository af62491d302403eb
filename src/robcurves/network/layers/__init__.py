"""The layer types of a network description; each knows, in one class, everything about itself.

Every layer is built for fixed per-sample input shapes (``in_shapes``, one tuple per input,
NHWC ``(H, W, C)`` for images, ``(n,)`` for vectors; no batch axis) and implements

- :meth:`Layer.evaluate` - the batched forward pass on ``keras.ops`` (TensorFlow, JAX or
  PyTorch backend), differentiable in the inputs and in the weights (the weights may be
  live Keras variables, as in training); the dtype of the input decides the arithmetic;
- :meth:`Layer.evaluate_numpy` - the same in float64 NumPy (references, MILP checks);
- :meth:`Layer.interval` - interval arithmetic: boxes ``(lo, hi)`` of shape
  ``(batch, *in_shape)`` in, the box of the image out;
- :meth:`Layer.backward` - linear (CROWN-style) bounds backwards: coefficients ``A`` on the
  output, shaped ``(batch, spec, *out_shape)``, give coefficients on each input and a
  constant ``(batch, spec)`` with ``A . out >= sum_i A_i . in_i + c`` for every input in
  the boxes the layer was given (the relaxation of a lower bound; an upper bound of
  ``A . out`` is minus the lower bound of ``-A . out``);
- :meth:`Layer.jvp` - directions through the linear region of a given input (the
  Jacobian products of MMR training);
- :meth:`Layer.emit` - its MILP constraints (:class:`robcurves.exact.milp.MilpBuilder`).

Affine layers (:class:`AffineLayer`: Dense, Conv2D, pooling by averages, elementwise
scaling, Flatten, Reshape) share one implementation of everything from four primitives:
the linear map, its transpose, the map with absolute weights and the sparse matrix.

The code lives in one module per family: :mod:`.base` (Layer, AffineLayer, shared tensor
helpers), :mod:`.affine` (Dense, Conv2D, Reshape, Flatten, Add, Scale, Pad2D, convolution
geometry), :mod:`.relu` and :mod:`.pooling`. Every name is importable from here.
"""
from robcurves.network.layers.base import (  # noqa: F401
    Shape, _in_trace, dtype_of, to_numpy, _is_live, _lead, _fold, _unfold, _sum_tail, Layer, AffineLayer,
)
from robcurves.network.layers.affine import (  # noqa: F401
    DENSE_JVP_MAX, conv_output_size, tf_same_pads, pads_from_padding, _pad_or_crop, conv2d_matrix, Dense, Conv2D, Reshape, Flatten, Add, Scale, Pad2D,
)
from robcurves.network.layers.relu import (  # noqa: F401
    ReLU,
)
from robcurves.network.layers.pooling import (  # noqa: F401
    pool_windows, _Pool, AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D,
)
