#!/usr/bin/env bash
# Stop the cluster that tests/slurm/start.sh STATE_DIR started: cancel its jobs, then end
# slurmd, slurmctld and munged by the process ids in their pid files (nothing else).
set -uo pipefail
state=$(cd "$1" && pwd) || exit 0
if [ -f "$state/slurm.conf" ]; then
  SLURM_CONF="$state/slurm.conf" timeout 10 scancel --user=root >/dev/null 2>&1 || true
fi
stop_pid_file() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null) || return 0
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
}
stop_pid_file "$state/slurmd.pid"
stop_pid_file "$state/slurmctld.pid"
stop_pid_file "$state/munge/munged.pid"
exit 0
