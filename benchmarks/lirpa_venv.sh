#!/usr/bin/env bash
# Make the separate venv in which benchmarks/anchor.py runs auto_LiRPA 0.3 (CROWN, alpha-CROWN).
#
# auto_LiRPA 0.3 (PyPI, 2022) declares torch<1.13, which has no Python 3.11 wheel, so it is
# installed with --no-deps next to a pinned CPU torch 2.x and only the dependencies its
# import path really uses (appdirs, pyyaml, tqdm, packaging; the declared pytest, pylint,
# pytest-order, ninja and torchvision are for its own tests and CUDA build). The small
# incompatibilities of 0.3 with torch 2.x / NumPy 2 are monkeypatched, documented, in
# benchmarks/lirpa_worker.py; nothing in site-packages is edited. The project's venv never
# imports torch: benchmarks/anchor.py talks to the worker only through .npz files.
#
# torch: the CPU build 2.13.0+cpu (no nvidia-* CUDA wheels; this machine serves it from its
# local wheel folder /opt/wheels, pip's find-links; elsewhere add --index-url
# https://download.pytorch.org/whl/cpu). The venv takes ~1 GB.
#
# Usage: bash benchmarks/lirpa_venv.sh [--robcurves] [VENV_DIR]   (default benchmarks/.venv-lirpa, git-ignored)
#
# --robcurves: also install robcurves itself (editable) with its locked dependencies and test
# extras (requirements.lock, so NumPy moves to the project's pin): a venv in which the
# attack tests run under KERAS_BACKEND=torch next to TensorFlow and JAX
# (tests/test_attack_backends.py compares the torch run with TensorFlow's and skips without it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
with_robcurves=0
if [ "${1:-}" = "--robcurves" ]; then with_robcurves=1; shift; fi
venv="${1:-$here/.venv-lirpa}"
# shellcheck source=benchmarks/venv_common.sh
. "$here/venv_common.sh"
make_venv "$venv"
"$venv/bin/python" -m pip install --quiet \
    "torch==2.13.0+cpu" \
    "numpy==2.2.6" \
    "appdirs==1.4.4" \
    "pyyaml==6.0.2" \
    "tqdm==4.67.1" \
    "packaging==24.2"
"$venv/bin/python" -m pip install --quiet --no-deps "auto-lirpa==0.3"
if [ "$with_robcurves" = 1 ]; then
    "$venv/bin/python" -m pip install --quiet -c "$here/../requirements.lock" -e "$here/..[test]"
fi
"$venv/bin/python" -c "import numpy, torch; print('torch', torch.__version__, 'numpy', numpy.__version__)"
du -sh "$venv" | cut -f1 | sed 's/^/venv size: /'
