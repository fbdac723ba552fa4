#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine (Debian 12, root, no systemd), for CI:
# munged + slurmctld + slurmd, no accounting database, and a node that advertises 2 fake GPUs
# (character devices standing in for /dev/nvidia*) so jobs that request GPUs can be scheduled.
# Everything lives under $DDPMSEG_SLURM_DIR (default /tmp/ddpmseg-slurm), wiped at each fresh
# start; /etc/slurm/slurm.conf and /etc/slurm/gres.conf are symlinks into it (the jobstep plugin
# strips SLURM_* variables, so SLURM_CONF is not enough). Idempotent: a cluster already up and idle
# is left as it is. Stop it with .ci/slurm/down.sh. See /work/shared/slurm-on-one-machine.md.
set -euo pipefail

DIR=${DDPMSEG_SLURM_DIR:-/tmp/ddpmseg-slurm}
GPU_TYPE=${DDPMSEG_SLURM_GPU_TYPE:-fakegpu}
# Jobs per core (partition OverSubscribe=FORCE:N). 2: two jobs may share a core, so that the start-up
# of one job (two single-threaded Snakemake processes per SLURM job, 5 to 8 s) overlaps another's
# computation on a 2-core machine; the GPUs (2) are not shared. 1: one job per core.
OVERSUBSCRIBE=${DDPMSEG_SLURM_OVERSUBSCRIBE:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
HOST=$(hostname -s)
SOCKET=$DIR/munge/munge.socket.2

die() {
    echo "slurm up: ERROR: $*" >&2
    exit 1
}
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_state() { sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n1; }

[[ $(id -u) == 0 ]] || die "must run as root (starts daemons, writes /etc/slurm)"

# Already up? (all three daemons alive from our pid files and the node idle)
if alive "$DIR/munged.pid" && alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" &&
    [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$DIR/slurm.conf" ]] &&
    [[ $(node_state) == idle ]]; then
    echo "slurm up: already running (node $HOST idle, state in $DIR)"
    exit 0
fi

# Packages (the Debian package scripts do not start services here: this script does).
need=(slurmctld slurmd sbatch squeue sinfo scontrol munged mungekey munge unmunge)
missing=0
for b in "${need[@]}"; do command -v "$b" >/dev/null || missing=1; done
if ((missing)); then
    echo "slurm up: installing slurmctld slurmd slurm-client munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null ||
        die "apt-get install slurmctld slurmd slurm-client munge failed"
    for b in "${need[@]}"; do command -v "$b" >/dev/null || die "$b still missing after apt-get install"; done
fi
id munge >/dev/null 2>&1 || die "user 'munge' missing (the munge package creates it)"

# /etc/slurm/{slurm,gres}.conf must be ours (symlinks into $DIR) or absent: never overwrite a real one.
mkdir -p /etc/slurm
for f in slurm.conf gres.conf; do
    if [[ -e /etc/slurm/$f || -L /etc/slurm/$f ]] && ! [[ -L /etc/slurm/$f && $(readlink /etc/slurm/$f) == "$DIR/$f" ]]; then
        die "/etc/slurm/$f exists and is not this script's symlink to $DIR/$f: refusing to replace it"
    fi
done

# A fresh start: stop whatever a previous start left, wipe the state.
"$HERE/down.sh" --quiet
rm -rf "$DIR"
mkdir -p "$DIR"/{state,spool,dev}
chmod 755 "$DIR"

# munge: own key, socket dir 0711, daemon as the munge user.
install -d -o munge -g munge -m 0711 "$DIR/munge"
mungekey --create --keyfile="$DIR/munge/munge.key" || die "mungekey failed"
chown munge:munge "$DIR/munge/munge.key"
chmod 0600 "$DIR/munge/munge.key"
touch "$DIR/munged.pid" && chown munge:munge "$DIR/munged.pid"
runuser -u munge -- /usr/sbin/munged --socket="$SOCKET" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" ||
    die "munged did not start; log: $(tail -n 5 "$DIR/munge/munged.log" 2>/dev/null)"
for _ in $(seq 50); do munge -n --socket="$SOCKET" 2>/dev/null | unmunge --socket="$SOCKET" >/dev/null 2>&1 && break; sleep 0.1; done
munge -n --socket="$SOCKET" | unmunge --socket="$SOCKET" >/dev/null ||
    die "munge credential round trip failed; log: $(tail -n 5 "$DIR/munge/munged.log" 2>/dev/null)"

# Fake GPUs: character devices (same numbers as /dev/null) that gres.conf points at.
for i in 0 1; do mknod "$DIR/dev/nvidia$i" c 1 3; done

# slurm.conf: the node line is slurmd -C's first line (CPUs, sockets, memory of this machine).
node=$(slurmd -C | head -n1)
[[ $node == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node"
cat >"$DIR/slurm.conf" <<CONF
# Written by .ci/slurm/up.sh: a single-node CI cluster, no accounting, no cgroups.
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# Backfill every 2 s (default 30 s): CPU-only jobs queued behind GPU jobs that wait for a GPU start at once.
SchedulerParameters=bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for an hour (status checks and CI evidence).
MinJobAge=3600
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
$node Gres=gpu:$GPU_TYPE:2 NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:$OVERSUBSCRIBE
CONF
cat >"$DIR/gres.conf" <<CONF
NodeName=$HOST Name=gpu Type=$GPU_TYPE File=$DIR/dev/nvidia[0-1]
CONF
ln -sfn "$DIR/slurm.conf" /etc/slurm/slurm.conf
ln -sfn "$DIR/gres.conf" /etc/slurm/gres.conf

slurmctld || die "slurmctld did not start; log:
$(tail -n 20 "$DIR/slurmctld.log" 2>/dev/null)"
slurmd || die "slurmd did not start; log:
$(tail -n 20 "$DIR/slurmd.log" 2>/dev/null)"

state=""
for _ in $(seq 150); do
    state=$(node_state)
    [[ $state == idle ]] && break
    sleep 0.2
done
if [[ $state != idle ]]; then
    echo "--- $DIR/slurmctld.log" >&2
    tail -n 20 "$DIR/slurmctld.log" >&2 || true
    echo "--- $DIR/slurmd.log" >&2
    tail -n 20 "$DIR/slurmd.log" >&2 || true
    die "node $HOST is '${state:-unknown}' after 30 s, not idle"
fi
echo "slurm up: node $HOST idle ($(sinfo -h -n "$HOST" -o '%c CPUs, %m MB, gres %G'); state in $DIR)"
