#!/usr/bin/env bash
# Host side of the packet-test lab (test/packet/lab.ts builds the topology itself).
#
#   hack/netlab.sh up      install the tools the lab runs, turn bridge netfilter on (remembering the
#                          previous sysctl values)
#   hack/netlab.sh down    remove every lab object a crashed or killed run may have left: libvirt
#                          bindings on lab ports and lab filters, processes in lab namespaces, the
#                          namespaces, host veths and the bridge; then restore the sysctls
#   hack/netlab.sh sweep   only the removal of leftover topology and bindings (not filters, not
#                          sysctls): run by the harness right after it took the lab lock, since
#                          whatever carries the lab prefix then was left by a dead run
#   hack/netlab.sh status  what is there now
#
# Ownership: this script owns packages, sysctls and the sweep of leftovers; the TypeScript harness
# owns creating (and, on a clean run, removing) the bridge, namespaces, veths and bindings.
# Everything the lab makes is named with a fixed prefix, and only such names are ever touched here:
#   bridge nwflab0, namespaces nwflab-<name>, host veths nwfl-<name>, filters nwflab-*.
# Idempotent: `up` twice keeps the first saved sysctl values; `down` on a clean host does nothing.
# Env: NWF_STATE (default /tmp/nwfilter-operator) holds netlab/sysctl.saved and the lock file.
set -euo pipefail

BRIDGE=nwflab0
NS_PREFIX=nwflab-
PORT_PREFIX=nwfl-
FILTER_PREFIX=nwflab-
LIBVIRT_URI=${LIBVIRT_URI:-qemu:///system}
STATE_DIR=${NWF_STATE:-/tmp/nwfilter-operator}/netlab
SAVED=$STATE_DIR/sysctl.saved
# Held by a running lab (test/packet/lab.ts writes "<pid> <lab name>"): one lab per machine.
LAB_LOCK=/run/nwflab.lock
# name=value set by `up`, restored by `down`.
#  - bridged IPv4/IPv6 frames only reach libvirt's iptables/ip6tables chains (-m physdev) with the
#    bridge-nf-call ones;
#  - a REJECT in libvirt's chains makes the host send the ICMP error, and the host rate-limits ICMP
#    errors per destination (1/s for IPv4, 10/s for IPv6) and overall (1000/s, burst 50): many
#    probes REJECTed towards one peer would mostly look dropped. Lifted while the lab is up.
SYSCTLS=(
  net.bridge.bridge-nf-call-iptables=1
  net.bridge.bridge-nf-call-ip6tables=1
  net.ipv4.icmp_ratelimit=0
  net.ipv6.icmp.ratelimit=0
  net.ipv4.icmp_msgs_per_sec=100000
  net.ipv4.icmp_msgs_burst=100000
)
# Binaries the lab runs, and the Debian package of each.
declare -A TOOLS=([ip]=iproute2 [iptables]=iptables [ping]=iputils-ping [dnsmasq]=dnsmasq-base [udhcpc]=udhcpc [conntrack]=conntrack [ethtool]=ethtool)

log() { echo "netlab: $*"; }
sysctl_path() { echo "/proc/sys/${1//.//}"; }

# One invocation at a time: `up` from one vitest run and `down` from another must not interleave.
lock() {
  mkdir -p "$STATE_DIR"
  exec 9>"$STATE_DIR/lock"
  flock -w 60 9 || { log "another netlab.sh holds $STATE_DIR/lock" >&2; exit 1; }
}

install_tools() {
  local missing=() tool pkg
  for tool in "${!TOOLS[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 || missing+=("${TOOLS[$tool]}")
  done
  ((${#missing[@]})) || return 0
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package lists only when one of the packages is unknown to them.
  local policy
  for pkg in "${missing[@]}"; do
    # Captured first: `| grep -q` would end apt-cache early, and pipefail would call that a failure.
    policy=$(apt-cache policy "$pkg" 2>/dev/null || true)
    if [[ ! $policy =~ Candidate:\ [0-9] ]]; then
      log "apt-get update (no candidate for $pkg)"
      apt-get update -qq
      break
    fi
  done
  log "installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

enable_bridge_netfilter() {
  if [[ ! -d /proc/sys/net/bridge ]]; then
    # Built into some kernels; a module on others (modprobe may not exist at all).
    command -v modprobe >/dev/null 2>&1 && modprobe br_netfilter 2>/dev/null || true
  fi
  if [[ ! -d /proc/sys/net/bridge ]]; then
    log "no /proc/sys/net/bridge: this kernel has no br_netfilter, bridged packets would bypass iptables" >&2
    exit 1
  fi
  local s name
  # A value is saved once, before the lab first changes it: a second `up` would otherwise save the
  # value it set itself. (Per name, so that a sysctl added to the list later is saved too.)
  touch "$SAVED"
  for s in "${SYSCTLS[@]}"; do
    name=${s%%=*}
    grep -q "^$name=" "$SAVED" || echo "$name=$(<"$(sysctl_path "$name")")" >>"$SAVED"
    echo "${s#*=}" >"$(sysctl_path "$name")"
  done
}

restore_sysctls() {
  [[ -f $SAVED ]] || return 0
  local line
  while IFS='=' read -r name value; do
    [[ -n $name ]] && echo "$value" >"$(sysctl_path "$name")"
  done <"$SAVED"
  rm -f "$SAVED"
  log "sysctls restored"
}

# Prints the lock's content when a live process holds it.
lab_in_use() {
  local holder pid
  holder=$(cat "$LAB_LOCK" 2>/dev/null) || return 1
  pid=${holder%% *}
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$holder"
}

libvirt_answers() { timeout 10 virsh -q -c "$LIBVIRT_URI" nwfilter-list >/dev/null 2>&1; }

# Bindings before ports: libvirt removes a binding's iptables chains itself, and a binding whose
# port is gone would stay in its state (and come back after a libvirtd restart).
remove_bindings() {
  command -v virsh >/dev/null 2>&1 || return 0
  if ! libvirt_answers; then
    log "libvirtd does not answer; lab bindings (if any) are left" >&2
    return 0
  fi
  local port
  while read -r port _; do
    [[ $port == "$PORT_PREFIX"* ]] || continue
    log "binding on $port"
    virsh -q -c "$LIBVIRT_URI" nwfilter-binding-delete "$port" >/dev/null || true
  done < <(virsh -q -c "$LIBVIRT_URI" nwfilter-binding-list)
}

# Filters a test defined under the lab prefix; only at `down` (a test may define its filters
# before it creates its lab). One that is still in use stays.
remove_filters() {
  command -v virsh >/dev/null 2>&1 && libvirt_answers || return 0
  local filter
  while read -r _ filter; do
    [[ $filter == "$FILTER_PREFIX"* ]] || continue
    log "filter $filter"
    virsh -q -c "$LIBVIRT_URI" nwfilter-undefine "$filter" >/dev/null || true
  done < <(virsh -q -c "$LIBVIRT_URI" nwfilter-list)
}

lab_namespaces() { ip netns list 2>/dev/null | awk -v p="$NS_PREFIX" 'index($1, p) == 1 { print $1 }'; }
lab_ports() { ip -o link show 2>/dev/null | awk -F': ' -v p="$PORT_PREFIX" '{ sub(/@.*/, "", $2) } index($2, p) == 1 { print $2 }'; }

# Processes in a lab namespace are the lab's helpers and daemons (the harness starts them there);
# they are ended by pid. A namespace is only destroyed once no process is left in it.
remove_namespaces() {
  local ns pids
  for ns in $(lab_namespaces); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [[ -n $pids ]]; then
      log "ending processes in $ns: $(echo $pids)"
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
      for _ in $(seq 20); do
        [[ -z $(ip netns pids "$ns" 2>/dev/null) ]] && break
        sleep 0.1
      done
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      # shellcheck disable=SC2086
      [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
    fi
    log "namespace $ns"
    ip netns delete "$ns" || true
  done
}

remove_links() {
  local port
  # Deleting one end of a veth deletes both; ends left in the root namespace are found here.
  for port in $(lab_ports); do
    log "link $port"
    ip link delete "$port" 2>/dev/null || true
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "bridge $BRIDGE"
    ip link delete "$BRIDGE"
  fi
}

# conntrack entries of lab flows in the root namespace (bridge netfilter tracks them there).
flush_conntrack() {
  command -v conntrack >/dev/null 2>&1 || return 0
  conntrack -D -f ipv4 -s 198.18.0.0/23 >/dev/null 2>&1 || true
  conntrack -D -f ipv4 -d 198.18.0.0/23 >/dev/null 2>&1 || true
  conntrack -D -f ipv6 -s fd6e:7766::/32 >/dev/null 2>&1 || true
  conntrack -D -f ipv6 -d fd6e:7766::/32 >/dev/null 2>&1 || true
}

sweep() {
  remove_bindings
  remove_namespaces
  remove_links
  flush_conntrack
}

status() {
  local tool s
  for tool in "${!TOOLS[@]}"; do
    printf 'tool %-10s %s\n' "$tool" "$(PATH=$PATH:/usr/sbin:/sbin command -v "$tool" || echo "missing (${TOOLS[$tool]})")"
  done
  for s in "${SYSCTLS[@]}"; do
    printf 'sysctl %s = %s (lab: %s)\n' "${s%%=*}" "$(cat "$(sysctl_path "${s%%=*}")" 2>/dev/null || echo missing)" "${s#*=}"
  done
  [[ -f $SAVED ]] && echo "saved for down: $(tr '\n' ' ' <"$SAVED")"
  echo "lab lock: $(lab_in_use || echo free)"
  echo "root ip_forward = $(</proc/sys/net/ipv4/ip_forward)"
  ip -br addr show "$BRIDGE" 2>/dev/null || echo "bridge $BRIDGE: absent"
  echo "namespaces: $(lab_namespaces | tr '\n' ' ')"
  echo "host veths: $(lab_ports | tr '\n' ' ')"
  if command -v virsh >/dev/null 2>&1 && libvirt_answers; then
    echo "bindings: $(virsh -q -c "$LIBVIRT_URI" nwfilter-binding-list | awk -v p="$PORT_PREFIX" 'index($1, p) == 1 { print $1 "->" $2 }' | tr '\n' ' ')"
  fi
}

case ${1:-} in
  up)
    lock
    install_tools
    enable_bridge_netfilter
    log "up ($(for s in "${SYSCTLS[@]}"; do printf '%s=%s ' "${s%%=*}" "$(<"$(sysctl_path "${s%%=*}")")"; done))"
    ;;
  down)
    lock
    # Another vitest run's lab is live: its topology and the sysctls it needs stay.
    if holder=$(lab_in_use); then
      log "a lab is in use (pid, name: $holder); nothing removed"
      exit 0
    fi
    rm -f "$LAB_LOCK"
    sweep
    remove_filters
    restore_sysctls
    log "down"
    ;;
  sweep)
    lock
    sweep
    ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|sweep|status" >&2
    exit 2
    ;;
esac
