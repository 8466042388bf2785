#!/usr/bin/env bash
# Shared by hack/libvirt-up.sh and hack/libvirt-down.sh (sourced): where the dev libvirtd lives and
# how to find its processes. Daemons are found through their own pid files, never by process name,
# so that nothing else on the machine is ever signalled.
LIBVIRT_URI=${LIBVIRT_URI:-qemu:///system}
LIBVIRT_SOCKET=/var/run/libvirt/libvirt-sock
NWF_STATE=${NWF_STATE:-/tmp/nwfilter-operator}
LIBVIRTD_LOG=$NWF_STATE/libvirtd.log
# Run as root, libvirtd and virtlogd write these (their built-in defaults).
LIBVIRTD_PIDFILE=/run/libvirtd.pid
VIRTLOGD_PIDFILE=/run/virtlogd.pid

# True when process $1 runs (exists and is no zombie: a killed daemon's parent here may reap late).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z && ${stat:0:1} != X ]]
}

# Prints the pid of daemon $1 (libvirtd|virtlogd) from its pid file when that process runs and is
# that daemon (a stale file may name a recycled pid).
daemon_pid() {
  local name=$1 file pid
  file=$([[ $name == libvirtd ]] && echo "$LIBVIRTD_PIDFILE" || echo "$VIRTLOGD_PIDFILE")
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
  alive "$pid" || return 1
  echo "$pid"
}

# Sends SIGTERM to daemon $1, waits up to 10 s, then SIGKILL.
stop_daemon() {
  local name=$1 pid
  pid=$(daemon_pid "$name") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 40); do
    alive "$pid" || return 0
    sleep 0.25
  done
  kill -KILL "$pid" 2>/dev/null || true
}

libvirt_answers() { timeout 10 virsh -q -c "$LIBVIRT_URI" nwfilter-list >/dev/null 2>&1; }
