#!/usr/bin/env bash
# Create .venv and install robcurves with its pinned dependencies (requirements.lock).
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
# --gpu: TensorFlow's CUDA build as well (pip extra .[gpu], tensorflow[and-cuda]); for
# cluster nodes with NVIDIA GPUs (profiles/slurm/config.yaml).
extras="test"
if [ "${1:-}" = "--gpu" ]; then
  extras="test,gpu"
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.robcurves-installed
want=$( (cat pyproject.toml requirements.lock; echo "$extras") | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[$extras]"
  echo "$want" > "$stamp"
fi
echo "robcurves environment ready: $(.venv/bin/python -c 'import robcurves, sys; print(robcurves.__version__, sys.version.split()[0])')"
