#!/usr/bin/env bash
# A single-node SLURM cluster on localhost for the workflow tests (Debian 12 packages, no systemd,
# no cgroups, no slurmdbd). Must run as root; installs the packages the first time.
#   local-slurm.sh         install if needed, configure, start what is not running, wait until a step runs
#   local-slurm.sh stop    stop the daemons named in the pid files (the test stops only those it started)
# Idempotent: installed packages, the munge key and running daemons are reused.
# The node declares more CPUs and memory than the machine has (SlurmdParameters=config_overrides), so
# the project profile's real per-rule requests (e.g. 8 CPUs, 64 GB for a generation cell) are accepted
# unchanged; nothing enforces them here (task/none, no cgroups), and `--jobs` bounds the parallelism.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
PIDS="/run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid"
WAIT_S=${WAIT_S:-60}
NODE_CPUS=${NODE_CPUS:-64}
NODE_MEM_MB=${NODE_MEM_MB:-512000}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "${1:-start}" = stop ]; then
  for f in $PIDS; do
    if alive "$f"; then
      pid=$(cat "$f"); kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "stopped pid $pid ($f)"
    fi
  done
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "local-slurm.sh: must run as root (installs packages, starts munged/slurmctld/slurmd)" >&2
  exit 1
fi

# 1. packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge
fi

# 2. config
mkdir -p /etc/slurm
cat > "$CONF.new" <<CONFEOF
# Minimal single-node SLURM cluster on localhost (cotprobe tests only)
ClusterName=localcluster
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
# No slurmdbd: sacct does not work (the profile override uses squeue); finished jobs stay visible to
# 'squeue --states=all' for MinJobAge seconds (the executor plugin needs >= 3 x its first status wait).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONFEOF
changed=0
if ! cmp -s "$CONF.new" "$CONF"; then mv "$CONF.new" "$CONF"; changed=1; else rm -f "$CONF.new"; fi

mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm \
         /run/munge /var/log/munge /var/lib/munge /etc/munge
chown slurm:slurm /var/spool/slurmctld /var/log/slurm
chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
chmod 0755 /run/munge; chmod 0700 /etc/munge

# 3. munge key (the Debian package normally creates it)
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key

# 4. daemons (no systemd: started directly, they daemonize themselves)
if ! alive /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
if [ "$changed" = 1 ]; then
  # config changed: restart the slurm daemons that already run
  for f in /run/slurmd.pid /run/slurmctld.pid; do
    if alive "$f"; then
      pid=$(cat "$f"); kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
fi
alive /run/slurmctld.pid || /usr/sbin/slurmctld
alive /run/slurmd.pid    || /usr/sbin/slurmd -N localhost   # node name != hostname

# 5. ready = the node is usable and a job step really runs (sinfo alone may show a state restored
#    from StateSaveLocation before slurmd has registered)
state=
for _ in $(seq $((WAIT_S * 2))); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
  case "$state" in
    idle|mixed|allocated)
      if timeout 10 srun --immediate=5 -t 1 true 2>/dev/null; then
        echo "slurm ready: node localhost $state"; exit 0
      fi ;;
    drain*|down*) scontrol update nodename=localhost state=resume 2>/dev/null || true ;;
  esac
  sleep 0.5
done
echo "slurm did not become ready in ${WAIT_S}s (state: ${state:-none})" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
