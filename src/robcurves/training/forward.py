"""The network as training sees it: the live description of a Keras model and its forward pass."""

from __future__ import annotations

import keras
import tensorflow as tf

from robcurves.network import Network, from_keras


def network_of(model: keras.Model) -> Network:
    """The live network description of ``model`` (its layers hold the model's variables, so
    losses on it train the model); ``ValueError`` naming any layer it cannot represent."""
    return from_keras(model, live=True)


# The description's code has no tensor-dependent Python control flow: AutoGraph would only
# spend seconds converting it (measured: 3 of 6 s of a 12-epoch digits run).
@tf.autograph.experimental.do_not_convert
def _forward(net: Network, x) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Logits and the pre-activations of every ReLU."""
    vals = net.activations(x)
    return vals[-1], [vals[net.nodes[i].inputs[0]] for i in net.layer_nodes("relu")]

