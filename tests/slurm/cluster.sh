#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for the tests and by hand (as root):
#   tests/slurm/cluster.sh start   # munged, slurmctld, slurmd; waits until the node is idle
#   export SLURM_CONF=/tmp/harness-slurm/slurm.conf   # what sbatch/squeue need (printed)
#   tests/slurm/cluster.sh stop    # stops, by PID, exactly the daemons `start` started
# Everything (config, key, state, logs, PID files) lives in $HARNESS_SLURM_DIR
# (default /tmp/harness-slurm); nothing under /etc is touched. No accounting (slurmdbd):
# the harness works from squeue and its run records. `stop` first cancels this user's
# jobs on the cluster, so that no job process outlives it.
set -euo pipefail
DIR=${HARNESS_SLURM_DIR:-/tmp/harness-slurm}
CONF=$DIR/slurm.conf
DAEMONS=(slurmd slurmctld munged)  # stopped in this order

running() {  # the PID in $DIR/$1.pid names a live process of that daemon
    local pid
    pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 1
    [[ -n $pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

write_conf() {
    local mem
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
    cat > "$CONF" <<CONF
ClusterName=harness
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
SlurmctldPort=${HARNESS_SLURM_PORT:-16817}
SlurmdPort=$(( ${HARNESS_SLURM_PORT:-16817} + 1 ))
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SchedulerParameters=sched_interval=1
MinJobAge=300
KillWait=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
    [[ $(id -u) == 0 ]] || { echo "cluster.sh: needs root (munged and slurmd run as root)" >&2; exit 2; }
    for tool in munged mungekey slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || { echo "cluster.sh: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 2; }
    done
    if running slurmctld && running slurmd && running munged; then
        echo "already running; export SLURM_CONF=$CONF"
        return
    fi
    stop >/dev/null
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge"
    chmod 0755 "$DIR" "$DIR/munge"
    [[ -f $DIR/munge.key ]] || mungekey --create --keyfile="$DIR/munge.key" 2>/dev/null
    write_conf
    munged --key-file="$DIR/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" --seed-file="$DIR/munge.seed"
    slurmctld -f "$CONF" -i
    slurmd -f "$CONF" -N localhost
    export SLURM_CONF=$CONF
    for _ in $(seq 100); do  # 20 s
        if [[ $(sinfo -h -N -n localhost -o %t 2>/dev/null) == idle ]]; then
            echo "started; export SLURM_CONF=$CONF"
            return
        fi
        sleep 0.2
    done
    echo "cluster.sh: the node did not become idle; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
    stop >/dev/null
    exit 1
}

stop() {
    local name pid
    if running slurmctld; then  # no job outlives the cluster: cancel them, let them end
        SLURM_CONF=$CONF scancel --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 75); do
            [[ -z $(SLURM_CONF=$CONF squeue -h -u "$(id -un)" 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
    for name in "${DAEMONS[@]}"; do
        running "$name" || { rm -f "$DIR/$name.pid"; continue; }
        pid=$(cat "$DIR/$name.pid")
        kill "$pid"
        for _ in $(seq 50); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
        [[ -d /proc/$pid ]] && kill -9 "$pid"
        rm -f "$DIR/$name.pid"
        echo "stopped $name (pid $pid)"
    done
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) for d in "${DAEMONS[@]}"; do running "$d" && echo "$d running" || echo "$d stopped"; done ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
