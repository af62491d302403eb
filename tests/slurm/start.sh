#!/usr/bin/env bash
# Start a one-node SLURM cluster on 127.0.0.1 with all its state under STATE_DIR:
#   tests/slurm/start.sh STATE_DIR
# Runs munged, slurmctld and slurmd as root, waits until the node is idle, and writes
# STATE_DIR/env.sh (SLURM_CONF and PATH) for client commands (sbatch, squeue, srun).
# Stop with tests/slurm/stop.sh STATE_DIR. Needs Debian's slurm-wlm and munge.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=$(mkdir -p "$1" && cd "$1" && pwd)
mkdir -p "$state/munge" "$state/ctld" "$state/slurmd"
chmod 700 "$state/munge"

# munge: a private key and socket, so that a system munged (if any) is left alone.
dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$state/munge/munge.key"
munged --force --key-file="$state/munge/munge.key" --socket="$state/munge/munge.socket" \
  --pid-file="$state/munge/munged.pid" --log-file="$state/munge/munged.log" \
  --seed-file="$state/munge/munged.seed"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
node=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
ctld_port=$(free_port)
slurmd_port=$(free_port)
while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
sed -e "s|@STATE@|$state|g" -e "s|@NODE@|$node|g" -e "s|@CPUS@|$cpus|g" -e "s|@MEM@|$mem|g" \
    -e "s|@CTLD_PORT@|$ctld_port|g" -e "s|@SLURMD_PORT@|$slurmd_port|g" \
    "$here/slurm.conf.in" > "$state/slurm.conf"
# The SLURM executor plugin starts each job's step with `srun`, after removing every
# SLURM_* variable (SLURM_CONF too) from the step's environment; a real cluster keeps
# its slurm.conf at the default path, ours is under $state. This shim puts SLURM_CONF
# back and runs the real srun.
mkdir -p "$state/bin"
printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$state/slurm.conf" "$(command -v srun)" > "$state/bin/srun"
chmod +x "$state/bin/srun"
printf 'export SLURM_CONF=%s\nexport PATH=%s:$PATH\n' "$state/slurm.conf" "$state/bin" > "$state/env.sh"
export SLURM_CONF="$state/slurm.conf"

# -i: ignore any saved state (a fresh cluster every time).
slurmctld -i -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N "$node"

for _ in $(seq 1 60); do
  if sinfo -h -N -o '%t' 2>/dev/null | grep -qx 'idle'; then
    echo "slurm cluster up: node $node, $cpus CPUs, ${mem} MB, controller port $ctld_port, state $state"
    exit 0
  fi
  sleep 0.5
done
echo "slurm cluster did not come up within 30 s; last log lines:" >&2
tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" "$state/munge/munged.log" >&2 || true
exit 1
