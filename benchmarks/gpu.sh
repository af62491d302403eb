#!/usr/bin/env bash
# The GPU benchmark on a borrowed GPU machine: our presets on 10,000 MNIST points (MMR
# network, three norms, default and fast) and a CIFAR-sized LeNet on 10,000 random
# points, under the JAX and the PyTorch backend; one table at the end.
#
# That machine has python3 with PyTorch, JAX (CUDA), NumPy, SciPy, scikit-learn and
# PyYAML, but no TensorFlow, no Snakemake and no registry. What it lacks travels with
# the working tree, in two git-ignored folders made here first:
#
#   bash benchmarks/gpu.sh prepare      # on this machine (has a registry and ../shared)
#     .whl/          Keras and the few wheels it needs that the GPU machine lacks:
#                    pip download --no-deps -d .whl keras==3.15.1 namex==0.1.0 absl-py==2.5.1 \
#                        rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 Pygments==2.21.0 \
#                        packaging==25.0 optree==0.20.0 h5py==3.14.0
#                    (optree and h5py are compiled: downloaded for CPython 3.10-3.13)
#     .gpu-carry/reference/   a copy of ../shared/reference (MNIST test set, MMR networks)
#
#   bash benchmarks/gpu.sh run [--n 10000] [--budget-s 200]   # on the GPU machine
#     (run tool: carry [".whl", ".gpu-carry"]; about 3 to 6 minutes, capped by --budget-s
#      per backend; a dry run on a CPU: bash benchmarks/gpu.sh run --n 200)
#
# Keras is installed from .whl into a temporary folder on PYTHONPATH (nothing is
# installed into the machine's Python); the project runs from src/ on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
shift || true
PY="${PYTHON:-python3}"

if [ "$mode" = "prepare" ]; then
    rm -rf .whl && mkdir -p .whl
    pure="keras==3.15.1 namex==0.1.0 absl-py==2.5.1 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 Pygments==2.21.0 packaging==25.0"
    "$PY" -m pip download --quiet --no-deps -d .whl $pure
    for v in 3.10 3.11 3.12 3.13; do
        "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$v" \
            --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
            -d .whl optree==0.20.0 h5py==3.14.0 || echo "no wheels for CPython $v (skipped)"
    done
    rm -rf .gpu-carry && mkdir -p .gpu-carry
    cp -r ../shared/reference .gpu-carry/reference
    chmod -R u+w .gpu-carry
    du -sh .whl .gpu-carry
    exit 0
fi

if [ "$mode" != "run" ]; then
    echo "usage: bash benchmarks/gpu.sh prepare | run [--n N] [--budget-s S]" >&2
    exit 2
fi
[ -d .whl ] || { echo "gpu.sh: .whl/ is missing: run 'bash benchmarks/gpu.sh prepare' where a registry is reachable" >&2; exit 1; }
site="$(mktemp -d)/site"
# --no-deps: NumPy, SciPy, ml_dtypes and the backends are the machine's own.
"$PY" -m pip install --quiet --no-index --no-deps --find-links .whl --target "$site" \
    keras namex absl-py rich markdown-it-py mdurl Pygments packaging optree h5py 2>&1 | grep -v "^WARNING" || true
export PYTHONPATH="$PWD/src:$site${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .gpu-carry/reference ]; then
    export ROBCURVES_REFERENCE="$PWD/.gpu-carry/reference"
fi
export TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
out="$(mktemp -d)"
"$PY" -c "import sys; print('python', sys.version.split()[0])"
for b in jax torch; do
    if "$PY" -c "import $b" 2>/dev/null; then
        echo "== backend $b"
        KERAS_BACKEND=$b "$PY" benchmarks/gpu_bench.py --part "$out/$b.json" "$@" || echo "backend $b failed (rc $?)"
    else
        echo "== backend $b: not importable here, skipped"
    fi
done
"$PY" benchmarks/gpu_bench.py --table "$out/jax.json" "$out/torch.json"
if [ -n "${OUT:-}" ]; then cp "$out"/*.json "$OUT"/ 2>/dev/null || true; fi
