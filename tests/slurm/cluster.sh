#!/usr/bin/env bash
# A real single-node Slurm (munge, MariaDB + slurmdbd accounting, slurmctld, slurmd) on loopback, for the
# tests and CI. Needs root; installs the Debian packages when missing. No systemd: daemons are started by
# hand and stopped by pidfile.
#
#   tests/slurm/cluster.sh start    # prints `export SLURM_CONF=...`; partitions: cpu (default), gpu (fake GRES)
#   tests/slurm/cluster.sh stop
#
# Facts behind the settings (docs/design.md, "Slurm and Ray"): accounting is required for submitit's job states;
# cred_expire=10 so a requeued job restarts within seconds; FirstJobId from the clock so job ids never
# collide in reused submitit folders; CPUs-only node line; cgroup proctrack kills Ray daemons on scancel.
# ReturnToService=1: a node set DOWN by hand (the node-failure test) stays down until `state=resume`.
set -euo pipefail
BASE=${SALNET_SLURM_DIR:-/tmp/salnet-slurm}
CONF=$BASE/etc/slurm.conf
export SLURM_CONF=$CONF
log(){ echo "[salnet-slurm] $*" >&2; }
wait_for(){ local n=$1; shift; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

stop_pid(){
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$f"
}

stop(){
  if [ -f "$CONF" ] && [ -f "$BASE/run/slurmctld.pid" ]; then
    timeout 10 scancel --quiet --full -u "$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(timeout 5 squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for d in slurmd slurmctld slurmdbd mariadbd; do stop_pid "$BASE/run/$d.pid"; done
  stop_pid "$BASE/run/munged.pid"
  log "stopped"
}

start(){
  [ "$(id -u)" = 0 ] || { log "needs root (installs packages, runs munged/slurmd)"; exit 3; }
  local pkgs=()
  command -v slurmctld >/dev/null || pkgs+=(slurmctld slurmd slurm-client)
  command -v munged >/dev/null || pkgs+=(munge)
  command -v slurmdbd >/dev/null || pkgs+=(slurmdbd)
  command -v mariadbd >/dev/null || pkgs+=(mariadb-server)
  if [ ${#pkgs[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || { log "apt-get not found; install ${pkgs[*]} by hand"; exit 3; }
    log "apt-get install ${pkgs[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 \
      || { log "apt-get install failed"; exit 3; }
  fi
  stop >/dev/null 2>&1 || true
  local node cpus mem first
  # at least 8 CPUs declared (config_overrides: slurmd does not drain a node that has fewer) so that a sweep's
  # driver and a 2-task DDP trial fit together on a 2-core CI machine, and the three sweeps that
  # tests/slurm/test_sweep_slurm.py runs side by side (a driver and up to 3 trials each) do not queue
  node=$(hostname -s); cpus=$(( $(nproc) < 8 ? 8 : $(nproc) ))
  mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))
  first=$(( ($(date +%s) % 600000) * 100 + 1 ))
  getent hosts "$node" >/dev/null || echo "127.0.0.1 $node" >> /etc/hosts
  rm -rf "$BASE"; mkdir -p "$BASE"/{etc,state,spool,log,run,dev}

  # munge: its own key and socket under $BASE, run as the munge user
  install -d -o munge -g munge -m 0700 "$BASE/munge"
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  chown munge:munge /etc/munge/munge.key; chmod 0600 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  if ! (munge -n | unmunge) >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --pid-file="$BASE/munge/munged.pid"
    wait_for 50 bash -c 'munge -n | unmunge' || { log "munged did not start"; exit 1; }
    cp "$BASE/munge/munged.pid" "$BASE/run/munged.pid"
  fi

  # two fake GPUs (device nodes cloned from /dev/null) so --gpus-per-node sets CUDA_VISIBLE_DEVICES
  for i in 0 1; do mknod -m 666 "$BASE/dev/nvidia$i" c 1 3 2>/dev/null || ln -sf /dev/null "$BASE/dev/nvidia$i"; done
  echo "NodeName=$node Name=gpu File=$BASE/dev/nvidia[0-1]" > "$BASE/etc/gres.conf"
  printf 'CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nConstrainCores=no\nConstrainRAMSpace=no\nConstrainDevices=no\n' \
    > "$BASE/etc/cgroup.conf"
  cat > "$CONF" <<CONF
ClusterName=salnet
FirstJobId=$first
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
SlurmctldPort=6817
SlurmdPort=6818
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/cgroup
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageTRES=gres/gpu
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
ReturnToService=1
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0
MessageTimeout=10
SchedulerParameters=sched_interval=2
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node MaxTime=INFINITE State=UP
CONF

  # accounting: MariaDB on its unix socket only, slurmdbd on 127.0.0.1:6819
  mariadb-install-db --user=root --datadir="$BASE/mysql" --skip-test-db --auth-root-authentication-method=socket \
    >"$BASE/log/mariadb-install.log" 2>&1
  mkdir -p /run/mysqld
  setsid nohup mariadbd --user=root --datadir="$BASE/mysql" --socket=/run/mysqld/mysqld.sock \
    --pid-file="$BASE/run/mariadbd.pid" --skip-networking --log-error="$BASE/log/mariadbd.log" \
    --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
  wait_for 300 mariadb -uroot -e 'select 1' || { log "mariadbd did not start"; tail "$BASE/log/mariadbd.log" >&2; exit 1; }
  cat > "$BASE/etc/slurmdbd.conf" <<DBD
AuthType=auth/munge
DbdHost=$node
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=salnet_acct_db
DBD
  chmod 600 "$BASE/etc/slurmdbd.conf"
  slurmdbd
  wait_for 300 bash -c "exec 3<>/dev/tcp/127.0.0.1/6819" || { log "slurmdbd did not start"; exit 1; }
  sacctmgr -i add cluster salnet >/dev/null 2>&1 || true

  slurmctld -f "$CONF"
  wait_for 100 bash -c 'scontrol ping | grep -q UP' || { log "slurmctld not responding"; exit 1; }
  slurmd -f "$CONF"
  for _ in $(seq 300); do
    case "$(sinfo -h -n "$node" -o %T 2>/dev/null | head -1)" in idle*) break ;; esac; sleep 0.1
  done
  [[ "$(sinfo -h -n "$node" -o %T | head -1)" == idle* ]] || { log "node not idle"; tail -5 "$BASE/log/slurmd.log" >&2; exit 1; }
  log "ready ($(sinfo -h -o '%P %D %T' | tr '\n' ' '))"
  echo "export SLURM_CONF=$CONF"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
