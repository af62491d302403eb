#!/usr/bin/env bash
# Make the separate venv in which benchmarks/attacks.py runs foolbox 3.3.4.
#
# foolbox 3.3.4 (with eagerpy 0.30) breaks on NumPy 2 in its TensorFlow backend, and the
# project's own venv pins NumPy 2, so foolbox lives in its own venv with numpy<2 and a
# TensorFlow (CPU) release that still supports NumPy 1. The benchmark talks to it only
# through files: it exports the model's weights and the points to an .npz, runs
# benchmarks/foolbox_worker.py in this venv, and reads the distances back.
#
# Usage: bash benchmarks/foolbox_venv.sh [VENV_DIR]   (default benchmarks/.venv-foolbox, git-ignored)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-$here/.venv-foolbox}"
# shellcheck source=benchmarks/venv_common.sh
. "$here/venv_common.sh"
make_venv "$venv"
"$venv/bin/python" -m pip install --quiet \
    "numpy<2" \
    "tensorflow-cpu==2.16.2" \
    "foolbox==3.3.4" \
    "eagerpy==0.30.0"
"$venv/bin/python" -c "import foolbox, numpy, tensorflow as tf; print('foolbox', foolbox.__version__, 'numpy', numpy.__version__, 'tensorflow', tf.__version__)"
