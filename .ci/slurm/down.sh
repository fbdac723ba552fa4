#!/usr/bin/env bash
# Stop the CI SLURM cluster started by .ci/slurm/up.sh: slurmd, slurmctld and munged, each by its
# pid file under $DDPMSEG_SLURM_DIR (default /tmp/ddpmseg-slurm), and remove the /etc/slurm
# symlinks that point there. Idempotent: nothing running is not an error. --quiet: no message when
# there was nothing to stop. The state dir is kept (logs for debugging); up.sh wipes it.
set -euo pipefail

DIR=${DDPMSEG_SLURM_DIR:-/tmp/ddpmseg-slurm}
quiet=0
[[ ${1:-} == --quiet ]] && quiet=1

stopped=()
for name in slurmd slurmctld munged; do
    pidfile=$DIR/$name.pid
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm down: $name (pid $pid) ignored SIGTERM for 10 s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        stopped+=("$name")
    fi
    rm -f "$pidfile"
done

for f in slurm.conf gres.conf; do
    if [[ -L /etc/slurm/$f && $(readlink "/etc/slurm/$f") == "$DIR/$f" ]]; then
        rm -f "/etc/slurm/$f"
    fi
done

if ((${#stopped[@]})); then
    echo "slurm down: stopped ${stopped[*]}"
elif ((!quiet)); then
    echo "slurm down: nothing was running"
fi
