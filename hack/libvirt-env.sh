#!/usr/bin/env bash
# Shared by hack/libvirt-up.sh and hack/libvirt-down.sh (sourced): where the dev libvirtd lives and
# how to find its processes. Daemons are found through their own pid files, never by process name,
# so that nothing else on the machine is ever signalled.
LIBVIRT_URI=${LIBVIRT_URI:-qemu:///system}
LIBVIRT_SOCKET=/var/run/libvirt/libvirt-sock
# The same libvirtd serves LXC containers (e2e packet test) once libvirt-daemon-driver-lxc is loaded.
LXC_URI=lxc:///system
LXC_PACKAGE_LIST=/var/lib/dpkg/info/libvirt-daemon-driver-lxc.list
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
lxc_answers() { timeout 10 virsh -q -c "$LXC_URI" uri >/dev/null 2>&1; }

# libvirt 9.0's LXC driver cannot start a container on a hybrid cgroup layout (v1 hierarchies, cgroup2
# at /sys/fs/cgroup/unified) whose cgroup2 carries a controller: it then uses both cgroup backends and
# libvirt_lxc fails with "Unable to create directory /sys/fs/cgroup/unified: No such file or
# directory". systemd's hybrid layout has no controller on cgroup2; some machines have one there
# (hugetlb). Binding each such controller to a v1 hierarchy of its own leaves cgroup2 without
# controllers, and libvirt then ignores it. Only done when no cgroup2 subtree uses the controller;
# a no-op on pure v1 or pure v2 hosts and on the second run.
fix_hybrid_cgroups_for_lxc() {
  local unified=/sys/fs/cgroup/unified controller
  [[ $(stat -f -c %T "$unified" 2>/dev/null) == cgroup2fs ]] || return 0
  [[ -f $unified/cgroup.controllers && -n $(<"$unified/cgroup.controllers") ]] || return 0
  if [[ -n $(<"$unified/cgroup.subtree_control") ]]; then
    echo "libvirtd: warning: cgroup2 controllers $(<"$unified/cgroup.controllers") are in use; LXC containers will not start" >&2
    return 0
  fi
  for controller in $(<"$unified/cgroup.controllers"); do
    echo "libvirtd: cgroup controller $controller moved from cgroup2 to /sys/fs/cgroup/$controller (for LXC)"
    mkdir -p "/sys/fs/cgroup/$controller"
    mount -t cgroup -o "$controller" cgroup "/sys/fs/cgroup/$controller"
  done
}

# Seconds since the epoch at which process $1 started (/proc/<pid>/stat field 22, in clock ticks since boot).
started_at() {
  local stat btime
  stat=$(cat "/proc/$1/stat") || return 1
  stat=${stat##*) }
  read -ra fields <<<"$stat"
  btime=$(awk '$1 == "btime" { print $2 }' /proc/stat)
  echo $((btime + fields[19] / $(getconf CLK_TCK)))
}
