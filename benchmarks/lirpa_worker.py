"""auto_LiRPA 0.3's CROWN and alpha-CROWN margin lower bounds of an exported network.

Runs in the auto_LiRPA venv (``bash benchmarks/lirpa_venv.sh``), never in the project's
own venv (which has no torch). ``benchmarks/anchor.py`` exports the network as the plain
layer list of ``benchmarks/attacks.export_layers`` (NHWC, HWIO kernels, (in, out) dense
weights) plus the points, labels, radii and the norm in an .npz, and reads back per
(point, radius, method) the lower bounds of the margins ``z_y - z_k`` for every ``k != y``
and the seconds each query took. Nothing here is trusted: it is the peer being measured.

The input domain. ℓ∞: ``x_L = max(x - r, lo)``, ``x_U = min(x + r, hi)`` (auto_LiRPA
concretises ℓ∞ over exactly that box, so ball ∩ box is exact). ℓ2, ℓ1: auto_LiRPA 0.3
ignores ``x_L``/``x_U`` for p < ∞ (``PerturbationLpNorm.init`` and ``concretize_matrix``
use only ``x`` and ``eps``: the dual-norm closed form ``A x0 - r ||A||_q``), so its bound
holds over the whole p-ball: sound for ball ∩ box, but it does not use the box.

Methods: ``crown`` (``method="backward"``: CROWN for every intermediate node and the
output), ``alpha`` (``"CROWN-Optimized"``, ``iters`` Adam steps, the library defaults
otherwise: lr 0.5, decay 0.98, keep best). In 0.3 every step recomputes the intermediate
nodes' bounds with the current slopes (``compute_intermediate_bounds`` is called per
step and per ReLU input: seen with cProfile), so this is alpha-CROWN with all slopes
optimised jointly; ``fix_intermediate_layer_bounds`` True or False gave identical
bounds here. ``sparse_spec_alpha`` is switched off: with it on, the first alpha-CROWN
call on this network fails in 0.3 at ``operators/activation.py`` ``assert
self.alpha_lookup_idx[start_node.name] is None`` (slopes stored for the unstable
neurons only, then asked for densely); off, the same slopes are stored densely (more
memory, same bounds). ``sparse_features_alpha`` is off too: with it on, ℓ2 alpha-CROWN
fails in ``activation.py`` ``reconstruct_full_alpha`` ("shape mismatch: value tensor of
shape [100, 1, 32, 7, 7] cannot be broadcast to indexing result of shape
[100, 1, 1424, 7, 7]").

Precision: ``spec["dtype"]`` float32 (the library's default and how it is used; the
default here) or float64 (``torch.set_default_dtype``: 0.3 makes some of its own
tensors in the default dtype, so a float64 model alone fails with a dtype mismatch).
Neither is a rigorous bound for the float32 model: auto_LiRPA has no rounding term.

Compatibility shims for torch 2.x / NumPy 2 (auto_LiRPA 0.3 was written for torch<1.13),
applied here at import and never in site-packages; each is listed in ``SHIMS``.

Usage: python lirpa_worker.py IN.npz OUT.npz
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

SHIMS: list[str] = []


def _apply_shims() -> None:
    """Make auto_LiRPA 0.3 importable on torch 2.x / NumPy 2 (documented, no file edits)."""
    # NumPy 2 made numpy.lib.arraysetops private; auto_LiRPA/operators/base.py imports isin from it.
    try:
        import numpy.lib.arraysetops  # noqa: F401
    except (ImportError, AttributeError):
        mod = types.ModuleType("numpy.lib.arraysetops")
        mod.isin = np.isin
        sys.modules["numpy.lib.arraysetops"] = mod
        SHIMS.append("numpy.lib.arraysetops -> module with isin = numpy.isin (NumPy 2)")
    # torch >= 2.9 moved the TorchScript ONNX exporter to torch.onnx._internal.torchscript_exporter;
    # torch.onnx.utils / symbolic_helper re-export only public names. auto_LiRPA/parse_graph.py
    # imports the private _optimize_graph and _set_opset_version (gone: opset is a GLOBALS field).
    import torch.onnx.symbolic_helper as sh
    import torch.onnx.utils as ou

    if not hasattr(ou, "_optimize_graph"):
        from torch.onnx._internal.torchscript_exporter import utils as ts_utils

        ou._optimize_graph = ts_utils._optimize_graph
        SHIMS.append("torch.onnx.utils._optimize_graph -> torch.onnx._internal.torchscript_exporter.utils")
    if not hasattr(sh, "_set_opset_version"):
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

        def _set_opset_version(v: int) -> None:
            GLOBALS.export_onnx_opset_version = v

        sh._set_opset_version = _set_opset_version
        SHIMS.append("torch.onnx.symbolic_helper._set_opset_version -> sets GLOBALS.export_onnx_opset_version")
    # torch 2.x dropped torch._C.Node.__getitem__ (attribute by name); auto_LiRPA/parse_graph.py
    # reads node attributes as n[k]. The typed getters (n.i, n.f, n.is, n.t, ...) remain:
    # dispatch on n.kindOf(k) as the old __getitem__ did.
    if not hasattr(torch._C.Node, "__getitem__"):
        def _node_getitem(node, name):
            return getattr(node, node.kindOf(name))(name)

        torch._C.Node.__getitem__ = _node_getitem
        SHIMS.append("torch._C.Node.__getitem__ -> getattr(node, node.kindOf(name))(name)")


_apply_shims()
import auto_LiRPA  # noqa: E402
from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm  # noqa: E402


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def build_model(layers: list[dict], arrays, input_shape) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The exported layer list as a torch ``nn.Sequential`` on NCHW input (float64).

    The NHWC flatten order of the export is folded into the next dense layer's rows, so
    the torch graph has no transposes (auto_LiRPA sees conv, relu, flatten, linear only).
    """
    mods = []
    shape = tuple(int(s) for s in input_shape)  # current NHWC shape (without batch)
    flat_perm = None
    for i, layer in enumerate(layers):
        kind = layer["kind"]
        if kind == "conv2d":
            w = np.asarray(arrays[f"w{i}"], np.float64)  # (kh, kw, in, out)
            kh, kw, cin, cout = w.shape
            sh, sw = layer["strides"]
            h, wd, _ = shape
            if layer["padding"] == "same":
                ph, pw = _same_pads(h, kh, sh), _same_pads(wd, kw, sw)
            else:
                ph, pw = (0, 0), (0, 0)
            if ph[0] != ph[1] or pw[0] != pw[1]:
                mods.append(torch.nn.ZeroPad2d((pw[0], pw[1], ph[0], ph[1])))
                pad = 0
            else:
                pad = (ph[0], pw[0])
            conv = torch.nn.Conv2d(cin, cout, (kh, kw), stride=(sh, sw), padding=pad)
            conv.weight.data = torch.tensor(w.transpose(3, 2, 0, 1).copy())
            conv.bias.data = torch.tensor(np.asarray(arrays[f"b{i}"], np.float64))
            mods.append(conv)
            shape = ((h + sum(ph) - kh) // sh + 1, (wd + sum(pw) - kw) // sw + 1, cout)
        elif kind == "relu":
            mods.append(torch.nn.ReLU())
        elif kind == "flatten":
            if len(shape) == 3:
                h, wd, c = shape
                # torch flattens (c, h, w); the export's dense rows are in (h, w, c) order
                flat_perm = np.arange(h * wd * c).reshape(h, wd, c).transpose(2, 0, 1).reshape(-1)
            mods.append(torch.nn.Flatten())
            shape = (int(np.prod(shape)),)
        elif kind == "dense":
            w = np.asarray(arrays[f"w{i}"], np.float64)  # (in, out)
            if flat_perm is not None:
                w = w[flat_perm]
                flat_perm = None
            lin = torch.nn.Linear(w.shape[0], w.shape[1])
            lin.weight.data = torch.tensor(w.T.copy())
            lin.bias.data = torch.tensor(np.asarray(arrays[f"b{i}"], np.float64))
            mods.append(lin)
            shape = (w.shape[1],)
        else:
            raise ValueError(f"layer kind {kind!r} is not built by lirpa_worker (conv2d, relu, flatten, dense)")
    return torch.nn.Sequential(*mods).to(torch.get_default_dtype()).eval(), shape


def margin_spec(y: int, n_classes: int) -> torch.Tensor:
    """C (1, n_classes - 1, n_classes): rows e_y - e_k for k != y, in increasing k."""
    ks = [k for k in range(n_classes) if k != y]
    C = torch.zeros(1, len(ks), n_classes)
    C[0, torch.arange(len(ks)), y] = 1.0
    C[0, torch.arange(len(ks)), ks] = -1.0
    return C


class Bounder:
    def __init__(self, model, x_example: torch.Tensor, iters: int):
        self.bm = BoundedModule(model, x_example, device="cpu", verbose=False,
                                bound_opts={"sparse_spec_alpha": False, "sparse_features_alpha": False})
        self.iters = int(iters)

    def lower(self, x: torch.Tensor, y: int, norm: str, r: float, method: str, box=(0.0, 1.0)) -> np.ndarray:
        p = {"linf": np.inf, "l2": 2.0, "l1": 1.0}[norm]
        if norm == "linf":
            ptb = PerturbationLpNorm(norm=p, eps=r, x_L=torch.clamp(x - r, box[0], box[1]),
                                     x_U=torch.clamp(x + r, box[0], box[1]))
        else:
            ptb = PerturbationLpNorm(norm=p, eps=r)
        bx = BoundedTensor(x, ptb)
        C = margin_spec(y, self.n_classes)
        if method == "crown":
            lb, _ = self.bm.compute_bounds(x=(bx,), C=C, method="backward", bound_upper=False)
        else:
            self.bm.set_bound_opts({"optimize_bound_args": {"iteration": self.iters}})
            lb, _ = self.bm.compute_bounds(x=(bx,), C=C, method="CROWN-Optimized", bound_upper=False)
        return lb.detach().numpy().reshape(-1)

    n_classes = 10


def bisect(f, hi: float, steps: int) -> float:
    """The largest radius in [0, hi] with f(r) (all margins certified), by bisection; 0 if none."""
    lo = 0.0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if f(mid):
            lo = mid
        else:
            hi = mid
    return lo


def main(argv: list[str]) -> int:
    src, dst = argv
    torch.set_num_threads(int(os.environ.get("LIRPA_THREADS", "1")))
    warnings.filterwarnings("ignore")
    data = np.load(src, allow_pickle=False)
    spec = json.loads(str(data["spec"]))
    dtype = {"float32": torch.float32, "float64": torch.float64}[spec.get("dtype", "float32")]
    torch.set_default_dtype(dtype)
    model, out_shape = build_model(spec["layers"], data, spec["input_shape"])
    x = np.asarray(data["x"], np.float32)  # (N, H, W, C)
    y = np.asarray(data["y"], np.int64)
    radii = np.asarray(data["radii"], np.float64)  # (N, R): the radii each point is asked at
    bis_hi = np.asarray(data["bisect_hi"], np.float64)  # (N,): bisection upper end (0: none)
    norm = str(data["norm"])
    methods = list(spec["methods"])
    bis_methods = list(spec["bisect_methods"])
    # per method: how many of the first points it runs on (alpha-CROWN is costly here)
    n_of = {m: int(spec.get("points_of", {}).get(m, len(x))) for m in methods}
    steps = int(spec["bisect_steps"])
    box = tuple(spec["bounds"])
    xt = torch.tensor(x.transpose(0, 3, 1, 2).copy(), dtype=dtype)
    with torch.no_grad():
        logits = model(xt).double().numpy()
    b = Bounder(model, xt[:1], int(spec["iters"]))
    b.n_classes = int(out_shape[0])
    N, R = radii.shape
    K = b.n_classes - 1
    out = {f"lb_{m}": np.full((N, R, K), np.nan) for m in methods}
    out.update({f"s_{m}": np.full((N, R), np.nan) for m in methods})
    out.update({f"rad_{m}": np.full(N, np.nan) for m in bis_methods})
    out.update({f"rad_s_{m}": np.full(N, np.nan) for m in bis_methods})
    # untimed warm-up: the first call of each method builds caches and imports
    for m in methods:
        b.lower(xt[:1], int(y[0]), norm, float(radii[0, 0]) * 0.5 + 1e-6, m, box)
    t_all = time.perf_counter()
    for i in range(N):
        xi = xt[i:i + 1]
        for j in range(R):
            for m in methods:
                if i >= n_of[m]:
                    continue
                t0 = time.perf_counter()
                out[f"lb_{m}"][i, j] = b.lower(xi, int(y[i]), norm, float(radii[i, j]), m, box)
                out[f"s_{m}"][i, j] = time.perf_counter() - t0
        for m in bis_methods:
            if bis_hi[i] > 0 and i < n_of[m]:
                t0 = time.perf_counter()
                out[f"rad_{m}"][i] = bisect(lambda r: bool(np.min(b.lower(xi, int(y[i]), norm, r, m, box)) > 0),
                                            float(bis_hi[i]), steps)
                out[f"rad_s_{m}"][i] = time.perf_counter() - t0
        print(f"lirpa {norm}: point {i + 1}/{N} ({time.perf_counter() - t_all:.0f}s)", file=sys.stderr, flush=True)
    info = {"versions": {"auto_LiRPA": auto_LiRPA.__version__, "torch": torch.__version__, "numpy": np.__version__},
            "shims": SHIMS, "threads": torch.get_num_threads(), "dtype": str(dtype).replace("torch.", ""),
            "seconds": time.perf_counter() - t_all}
    np.savez(dst, info=np.array(json.dumps(info)), logits=logits, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
