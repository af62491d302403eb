"""Run in a subprocess with KERAS_BACKEND set: the network description's keras.ops side on that
backend. Prints one line ``PROBE {json}`` with logits and bounds for tests/test_network.py."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 bounds on JAX

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from network_cases import pooled_net, residual_net  # noqa: E402
from robcurves.network import Domain, crown_bounds, interval_bounds  # noqa: E402

out = {"backend": keras.backend.backend()}
for make in (residual_net, pooled_net):
    net = make(np.random.default_rng(7))
    x = np.random.default_rng(8).random((2, *net.input_shape))
    z = ops.convert_to_numpy(net.evaluate(ops.convert_to_tensor(x.astype(np.float32))))
    dom = Domain.ball(x, "l2", 0.3).tensors()
    ib = interval_bounds(net, dom)[-1]
    cb = crown_bounds(net, dom)[-1]
    out[make.__name__] = {"logits": np.asarray(z, np.float64).tolist(),
                          "dtype": str(ops.convert_to_numpy(cb[0]).dtype),
                          "interval": [np.asarray(ops.convert_to_numpy(t), np.float64).tolist() for t in ib],
                          "crown": [np.asarray(ops.convert_to_numpy(t), np.float64).tolist() for t in cb]}
print("PROBE " + json.dumps(out))
