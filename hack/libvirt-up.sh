#!/usr/bin/env bash
# Starts a real libvirtd with the nwfilter driver (and QEMU for real VMs, LXC for containers) on this
# machine, without systemd. Idempotent: installs the Debian packages when missing, creates what the
# daemon needs, starts virtlogd and libvirtd when not running, restarts libvirtd once when it predates
# the LXC driver's installation (drivers load at start only), waits until libvirtd answers, prints
# URI and socket.
# Env: NWF_STATE (default /tmp/nwfilter-operator) holds libvirtd.log.
set -euo pipefail
cd "$(dirname "$0")"
source ./libvirt-env.sh

# Cheap and idempotent; needed after every boot, by every container start (no daemon restart).
fix_hybrid_cgroups_for_lxc

# ipset is checked here too: a machine whose libvirtd already runs must still get the agent's tool.
if libvirt_answers && lxc_answers && grep -qs '^user = "root"' /etc/libvirt/qemu.conf && command -v ipset >/dev/null; then
  echo "libvirtd: running (uri $LIBVIRT_URI, socket $LIBVIRT_SOCKET; also $LXC_URI)"
  exit 0
fi

packages=(libvirt-daemon libvirt-daemon-config-nwfilter libvirt-clients iptables ebtables ipset qemu-system-x86 libvirt-daemon-driver-lxc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "libvirtd: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bookworm has no modular daemons; libvirtd needs these to exist before it starts.
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/log/libvirt/qemu /var/run/libvirt /var/lib/libvirt/qemu "$NWF_STATE"
# Guests run as root. Besides tap devices, this matters for /dev/kvm (root-only here): with the
# default libvirt-qemu user, libvirt finds KVM "no longer available" on every call, throws its
# QEMU capability cache away and re-probes QEMU for ~15 s (seen in virQEMUCapsIsValid's debug log).
config_changed=no
if ! grep -qs '^user = "root"' /etc/libvirt/qemu.conf; then
  mkdir -p /etc/libvirt
  printf 'user = "root"\ngroup = "root"\n' >>/etc/libvirt/qemu.conf
  config_changed=yes
fi

if [[ $config_changed == yes ]] && daemon_pid libvirtd >/dev/null; then
  echo "libvirtd: restarting to apply qemu.conf"
  stop_daemon libvirtd
fi
# libvirtd loads its drivers when it starts: one started before libvirt-daemon-driver-lxc was
# installed answers "no connection driver available for lxc:///system" until restarted. Restart only
# such a daemon (started before the package's install time), so that a second run never restarts,
# even when the LXC driver fails for another reason (then the warning below says so).
if pid=$(daemon_pid libvirtd) && ! lxc_answers && [[ $(started_at "$pid") -lt $(stat -c %Y "$LXC_PACKAGE_LIST") ]]; then
  echo "libvirtd: restarting to load the LXC driver (installed after libvirtd $pid started); connected clients reconnect"
  stop_daemon libvirtd
fi
daemon_pid virtlogd >/dev/null || virtlogd -d
# No journal here: send libvirtd's warnings and errors to a file. English messages (LC_ALL=C): the
# client's error helpers read a few of them (libvirt shares error codes between unrelated cases).
if ! daemon_pid libvirtd >/dev/null; then
  LC_ALL=C LIBVIRT_LOG_OUTPUTS="3:file:$LIBVIRTD_LOG" libvirtd -d
fi
# `libvirtd -d` exits 0 even when the daemon dies right after: poll until it answers.
for _ in $(seq 60); do
  libvirt_answers && break
  sleep 0.5
done
if ! libvirt_answers; then
  echo "libvirtd: did not answer on $LIBVIRT_URI; see $LIBVIRTD_LOG and /var/log/libvirt/" >&2
  exit 1
fi
if ! lxc_answers; then
  echo "libvirtd: warning: $LXC_URI does not answer: $(timeout 10 virsh -q -c "$LXC_URI" uri 2>&1 | tr '\n' ' ')(see $LIBVIRTD_LOG)" >&2
fi
echo "libvirtd: running (uri $LIBVIRT_URI, socket $LIBVIRT_SOCKET; also $LXC_URI)"
