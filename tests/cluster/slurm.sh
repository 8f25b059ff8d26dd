#!/usr/bin/env bash
# A single-node SLURM cluster on localhost for the tests (tests/cluster/conftest.py runs it; CI runs as root).
#
#   tests/cluster/slurm.sh start    install slurm-wlm + munge if missing, configure, start, wait until the node is idle
#   tests/cluster/slurm.sh stop     stop slurmd, slurmctld and munged (the packages and config stay)
#   tests/cluster/slurm.sh status   exit 0 when this script's cluster answers and its node is up, 1 otherwise
#
# Exit status of `start`: 0 running (last stdout line `started ...` or `already running ...`); 77 this machine cannot
# have the cluster (not root, no apt-get, no Debian mirror, a slurm.conf that is not ours...): the last stderr line
# `slurm.sh: skip: <reason>` says why and the tests skip with that reason; anything else is a real failure (a
# daemon that does not come up): it prints the daemons' log tails and the tests fail.
#
# Idempotent: a second `start` finds the daemons up and leaves them; a changed config restarts them. Concurrent
# runs are serialised by a lock file.
#
# Pitfalls met on the way, and what this script does about them:
# - Containers (Docker, gVisor) have no systemd and no writable cgroup tree. With the cgroup plugins slurmd still
#   registers and the node shows idle, but every job dies at launch (slurmd.log: "cgroup namespace 'freezer' not
#   mounted. aborting ... job_manager: exiting abnormally") and `sbatch --wait` even returns 0 for it, with no
#   output file: only a job that writes something shows it (tests/cluster/test_slurm_sbatch.py). We use
#   ProctrackType=proctrack/linuxproc (tracks a job's processes through their parent pids), TaskPlugin=task/none and
#   JobAcctGatherType=jobacct_gather/none; nothing needs cgroup.conf. The cost: no memory/CPU enforcement per job,
#   which a test cluster does not need.
# - Package post-install scripts try to start the services through invoke-rc.d, which fails (or starts them half
#   configured) without an init system; a temporary /usr/sbin/policy-rc.d that answers 101 ("action forbidden")
#   keeps apt from starting anything. We remove it again unless it was there before.
# - Host names: slurmctld only runs where SlurmctldHost names the machine itself, and slurmd looks itself up by
#   NodeName. Both use the short host name, but the *addresses* are pinned to 127.0.0.1
#   (SlurmctldHost=name(127.0.0.1), NodeAddr=127.0.0.1) so a host name without a DNS or /etc/hosts entry (common on
#   fresh CI machines) still works.
#   slurmd is started with -N <name> so it never has to guess.
# - Node size: the NodeName line comes from `slurmd -C` (the CPUs and RealMemory slurmd itself will measure; a
#   config that claims more gets the node drained as "Low RealMemory"/"Low socket*core*thread count"). We allocate
#   by CPU (SelectTypeParameters=CR_CPU), not by core: on a machine with 2 hyperthreads per core CR_Core would
#   give each 1-CPU job a whole core and halve the number of jobs that run at once. Memory is not a consumable
#   resource here: with CR_CPU_Memory and no --mem a job would take all of the node's memory and run alone.
# - Sharing: the partition lets up to 4 jobs share a CPU (OverSubscribe=FORCE:4). The suite's two processes (and a
#   bench beside them) each start 2 one-core worker jobs; on a 2-CPU node the second session's jobs waited, pending,
#   until the first's ended, and its test waited out its timeout.
# - munge: munged refuses a key readable by group or others ("Keyfile is insecure ... perms=0444") and directories
#   owned by anyone but the user it runs as ("PRNG seed dir is insecure: invalid ownership"); the key is created with
#   `mungekey` (or dd from /dev/urandom), owned munge:munge, mode 0400, its directories are owned by munge, and munged
#   runs as munge via runuser. Its socket directory /run/munge (tmpfs, gone after a reboot) is recreated.
# - /run/slurm and the state/spool directories are recreated at every start (tmpfs in containers) and owned by
#   SlurmUser (slurm), since slurmctld drops to that user before it writes state.
# - The lock that serialises runs of this script is an flock on fd 9; the daemons are started with 9>&- because
#   a daemon that inherits the descriptor (munged keeps it) holds the lock for ever and the next run hangs.
# - A node can come back from a restart DOWN or DRAINED (e.g. "Node unexpectedly rebooted", or drained by an earlier
#   config that claimed too much); ReturnToService=2 lets it return on registration, and wait_idle resumes it.
set -euo pipefail

VERB="${1:-start}"
CLUSTER=declip-test
PARTITION=declip
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARK="# written by declip tests/cluster/slurm.sh"
NODE="$(uname -n)"
NODE="${NODE%%.*}"  # the short host name, without needing the hostname package
LOCK_DIR=/run/lock
SKIP=77
WAIT_S="${DECLIP_SLURM_WAIT_S:-180}"

say() { echo "slurm.sh: $*" >&2; }
skip() { say "skip: $*"; exit "$SKIP"; }
die() { say "error: $*"; logs; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

logs() {
  for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log; do
    [ -r "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
  done
  return 0
}

have_binaries() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null
}

# Our cluster answers: the controller is ours (cluster name) and our node is in a usable state.
node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1; }
ours_up() {
  have_binaries && pid_alive /run/slurm/slurmctld.pid || return 1  # else scontrol waits ~10 s for a controller
  # grep without -q: under pipefail, grep -q quitting early kills scontrol with SIGPIPE and the pipeline "fails".
  scontrol show config 2>/dev/null | grep -E "^ClusterName *= *$CLUSTER\$" >/dev/null || return 1
  case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  command -v apt-get >/dev/null || skip "no apt-get: this script installs Debian's slurm-wlm and munge"
  local t0 policy=/usr/sbin/policy-rc.d made_policy=0
  t0=$(now)
  say "installing slurm-wlm and munge with apt-get (once per machine)"
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT  # also when the install is interrupted
  fi
  local out rc=0
  out=$(apt-get update -q 2>&1) || rc=$?
  if [ "$rc" = 0 ]; then
    out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge 2>&1) || rc=$?
  fi
  if [ "$made_policy" = 1 ]; then rm -f "$policy"; trap - EXIT; fi
  if [ "$rc" != 0 ]; then
    skip "apt-get could not install slurm-wlm and munge (no Debian mirror reachable?): $(echo "$out" | tail -n1)"
  fi
  have_binaries || skip "slurm-wlm and munge installed but slurmctld/slurmd/sbatch/munged not on PATH"
  echo "installed slurm-wlm and munge in $(elapsed "$t0") s"
}

node_line() {
  # `slurmd -C` prints what slurmd will measure at registration; fall back to nproc and /proc/meminfo.
  local measured
  measured=$(slurmd -C 2>/dev/null | grep '^NodeName=' | head -n1 || true)
  if [ -n "$measured" ]; then
    echo "$measured" | sed -E "s/^NodeName=[^ ]+/NodeName=$NODE/"
  else
    echo "NodeName=$NODE CPUs=$(nproc) RealMemory=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)"
  fi
}

write_config() {
  mkdir -p "$CONF_DIR"
  if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    skip "$CONF exists and was not written by this script (a real cluster?); not touching it"
  fi
  local new
  new=$(mktemp)
  cat >"$new" <<EOF
$MARK
# Single-node test cluster on localhost; see the comments in the script for why each setting is what it is.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
# Short job-record life and kill wait: scancel'ed test jobs go away quickly.
MinJobAge=60
KillWait=5
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=60
$(node_line) NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  if [ -e "$CONF" ] && cmp -s "$new" "$CONF"; then
    rm -f "$new"
    return 1  # unchanged
  fi
  install -m 644 "$new" "$CONF"
  rm -f "$new"
  return 0
}

start_munge() {
  if pid_alive /run/munge/munged.pid && munge -n </dev/null | unmunge >/dev/null 2>&1; then
    return 0
  fi
  install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile=/etc/munge/munge.key --force
    else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  rm -f /run/munge/munged.pid
  # --force: munged also refuses a group-writable parent of its log file, and Ubuntu's /var/log is root:syslog 0775.
  runuser -u munge -- munged --force 9>&- || die "munged did not start"
  for _ in $(seq 1 50); do
    munge -n </dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "munged started but munge -n | unmunge fails"
}

start_slurm() {
  install -d -o slurm -g slurm -m 755 /run/slurm /var/lib/slurm /var/lib/slurm/slurmctld /var/log/slurm
  install -d -o root -g root -m 755 /var/lib/slurm/slurmd
  if ! pid_alive /run/slurm/slurmctld.pid; then
    slurmctld 9>&- || die "slurmctld did not start"
  fi
  for _ in $(seq 1 "$WAIT_S"); do
    scontrol ping 2>/dev/null | grep 'is UP' >/dev/null && break
    sleep 1
  done
  scontrol ping 2>/dev/null | grep 'is UP' >/dev/null || die "slurmctld does not answer scontrol ping"
  if ! pid_alive /run/slurm/slurmd.pid; then
    slurmd -N "$NODE" 9>&- || die "slurmd did not start"
  fi
}

wait_idle() {
  local state
  for _ in $(seq 1 "$WAIT_S"); do
    state=$(node_state)
    case "$state" in
      idle|mixed|allocated|completing) return 0 ;;
      down*|drain*|fail*)
        # Left over from an earlier run (e.g. "Node unexpectedly rebooted"): put it back in service.
        scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  sinfo -R >&2 || true
  die "node $NODE is '${state:-unknown}' after ${WAIT_S}s, not idle"
}

stop_all() {
  local f pid
  scontrol shutdown >/dev/null 2>&1 || true
  for f in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/munge/munged.pid; do
    pid_alive "$f" || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  done
  return 0
}

lock() {
  mkdir -p "$LOCK_DIR"
  exec 9>"$LOCK_DIR/declip-slurm.lock"
  flock 9
}

case "$VERB" in
  status)
    ours_up && { sinfo; exit 0; }
    say "not running"; exit 1 ;;
  stop)
    [ "$(id -u)" = 0 ] || { say "error: stop needs root"; exit 1; }
    lock
    stop_all
    echo "stopped" ;;
  start)
    if [ "$(id -u)" != 0 ]; then
      ours_up && { echo "already running (node $NODE $(node_state))"; exit 0; }
      skip "not root: installing and starting SLURM needs root (CI runs as root)"
    fi
    lock
    t_all=$(now)
    have_binaries || install_packages
    changed=0
    write_config && changed=1
    if [ "$changed" = 0 ] && ours_up; then
      echo "already running (node $NODE $(node_state))"
      exit 0
    fi
    if [ "$changed" = 1 ]; then
      stop_all  # daemons running with an old config would not see the new one
    fi
    t_start=$(now)
    start_munge
    start_slurm
    wait_idle
    echo "started in $(elapsed "$t_start") s (this run $(elapsed "$t_all") s): node $NODE $(node_state)," \
      "partition $PARTITION, $(sinfo -h -n "$NODE" -o '%c CPUs %m MB')" ;;
  *)
    say "usage: $0 start|stop|status"; exit 2 ;;
esac
