#!/usr/bin/env bash
# Stop the cluster tests/slurm/start_slurm.sh started in DIR (only its daemons, by their pid
# files), remove its /etc/slurm/slurm.conf link and DIR.
set -uo pipefail
DIR=$(realpath "${1:?usage: stop_slurm.sh DIR}")
[ -f "$DIR/slurm.conf" ] || { echo "stop_slurm.sh: $DIR holds no slurm.conf" >&2; exit 2; }
PIDFILES=("$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid")

running() {  # a live process (not a zombie waiting for its parent)
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ "$state" != Z ]
}

for pidfile in "${PIDFILES[@]}"; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
for pidfile in "${PIDFILES[@]}"; do  # let them exit before their directory goes
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    for _ in $(seq 40); do running "$pid" || break; sleep 0.25; done
done
[ "$(readlink /etc/slurm/slurm.conf)" = "$DIR/slurm.conf" ] && rm -f /etc/slurm/slurm.conf
rm -rf "$DIR"
