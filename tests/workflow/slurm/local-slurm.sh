#!/usr/bin/env bash
# A single-node SLURM cluster on localhost for the workflow tests (Debian 12 packages, no systemd,
# no cgroups, no slurmdbd), private to one directory. Must run as root; installs the packages the first time.
#   local-slurm.sh start DIR   install if needed, write DIR/slurm.conf, start munged, slurmctld and slurmd
#                              with all their state, sockets, pid and log files under DIR, wait until a step runs
#   local-slurm.sh stop DIR    stop the daemons named in DIR's pid files
# Clients reach this cluster only through DIR/bin on their PATH (wrappers of sbatch, srun, squeue, ...
# that set SLURM_CONF=DIR/slurm.conf: inside a job the jobstep plugin drops SLURM_* variables before its
# srun, PATH survives): nothing is written to /etc/slurm, /etc/munge, /run or /var (a slurm.conf left in
# /etc/slurm makes every later `snakemake` wait ~10 s: the SLURM executor plugin runs `scontrol show
# config` when it loads, and that waits for a controller that no longer runs). The daemons listen on
# free ports (SLURMCTLD_PORT, SLURMD_PORT to choose).
# What the packages themselves install (apt-get install --no-install-recommends slurmctld slurmd
# slurm-client munge): binaries under /usr, users slurm and munge, /etc/munge/munge.key (munge's
# postinst), /etc/slurm/plugstack.conf and disabled systemd units; none of it configures a cluster.
# The node declares more CPUs and memory than the machine has (SlurmdParameters=config_overrides), so
# the project profile's real per-rule requests (e.g. 8 CPUs, 64 GB for a generation cell) are accepted
# unchanged; nothing enforces them here (task/none, no cgroups), and `--jobs` bounds the parallelism.
set -euo pipefail

CMD=${1:-}
DIR=${2:-}
if [ -z "$DIR" ] || { [ "$CMD" != start ] && [ "$CMD" != stop ]; }; then
  echo "usage: local-slurm.sh start|stop DIR" >&2
  exit 2
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CONF=$DIR/slurm.conf
PIDS="$DIR/run/slurmd.pid $DIR/run/slurmctld.pid $DIR/munge/munged.pid"
WAIT_S=${WAIT_S:-60}
NODE_CPUS=${NODE_CPUS:-64}
NODE_MEM_MB=${NODE_MEM_MB:-512000}
export SLURM_CONF=$CONF

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "$CMD" = stop ]; then
  for f in $PIDS; do
    if alive "$f"; then
      pid=$(cat "$f"); kill "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "stopped pid $pid ($f)"
    fi
  done
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "local-slurm.sh: must run as root (installs packages, starts munged/slurmctld/slurmd)" >&2
  exit 1
fi

# 1. packages (binaries only: the packages' daemons are not started, policy-rc.d or no systemd)
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
CTLD_PORT=${SLURMCTLD_PORT:-$(free_port)}
SLURMD_PORT=${SLURMD_PORT:-$(free_port)}
while [ "$SLURMD_PORT" = "$CTLD_PORT" ]; do SLURMD_PORT=$(free_port); done

# 2. config and state, all under DIR (root runs every daemon: no chown of anything outside DIR)
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run" "$DIR/munge"
chmod 0700 "$DIR/munge"
if [ ! -s "$CONF" ]; then
  cat > "$CONF" <<CONFEOF
# Minimal single-node SLURM cluster on localhost (cotprobe tests only), private to $DIR
ClusterName=cotprobetest
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
PlugStackConfig=$DIR/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
# No slurmdbd: sacct does not work (the profile override uses squeue); finished jobs stay visible to
# 'squeue --states=all' for MinJobAge seconds: longer than a test's run may take (900 s) plus its checks.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONFEOF
  : > "$DIR/plugstack.conf"
fi

# the clients, pointed to this cluster
mkdir -p "$DIR/bin"
path_without_wrappers=$(printf %s "$PATH" | tr ':' '\n' | grep -vxF "$DIR/bin" | paste -sd:)
for tool in sbatch srun salloc squeue scontrol sinfo scancel sacct sacctmgr sshare sstat; do
  real=$(PATH=$path_without_wrappers command -v "$tool" || true)
  if [ -n "$real" ]; then
    printf '#!/bin/sh\nSLURM_CONF='"'%s'"' exec '"'%s'"' "$@"\n' "$CONF" "$real" > "$DIR/bin/$tool"
    chmod 0755 "$DIR/bin/$tool"
  fi
done

# 3. a munge key of this cluster's own
if [ ! -s "$DIR/munge/munge.key" ]; then
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1 count=1024 status=none
fi
chmod 0400 "$DIR/munge/munge.key"

# 4. daemons (no systemd: started directly, they daemonize themselves)
if ! alive "$DIR/munge/munged.pid"; then
  munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
  for _ in $(seq 50); do munge -S "$DIR/munge/munge.socket" -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF"
alive "$DIR/run/slurmd.pid" || slurmd -f "$CONF" -N localhost   # node name != hostname

# 5. ready = the node is usable and a job step really runs (sinfo alone may show a state restored
#    from StateSaveLocation before slurmd has registered)
state=
for _ in $(seq $((WAIT_S * 2))); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
  case "$state" in
    idle|mixed|allocated)
      if timeout 10 srun --immediate=5 -t 1 true 2>/dev/null; then
        echo "slurm ready: node localhost $state (SLURM_CONF=$CONF)"; exit 0
      fi ;;
    drain*|down*) scontrol update nodename=localhost state=resume 2>/dev/null || true ;;
  esac
  sleep 0.5
done
echo "slurm did not become ready in ${WAIT_S}s (state: ${state:-none})" >&2
tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" "$DIR/munge/munged.log" >&2 || true
exit 1
