#!/usr/bin/env bash
# Starts a real libvirtd with the nwfilter driver (and QEMU for real VMs) on this machine.
# Idempotent: installs the Debian packages when missing, creates what the daemon needs, starts
# virtlogd and libvirtd when not running, waits until libvirtd answers, prints the URI.
set -euo pipefail
uri=qemu:///system
socket=/var/run/libvirt/libvirt-sock
packages=(libvirt-daemon libvirt-daemon-config-nwfilter libvirt-clients iptables ebtables qemu-system-x86)

answers() { timeout 10 virsh -c "$uri" nwfilter-list >/dev/null 2>&1; }

if answers && grep -qs '^user = "root"' /etc/libvirt/qemu.conf; then
  echo "libvirtd: running ($uri, socket $socket)"
  exit 0
fi

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
mkdir -p /var/log/libvirt/qemu /var/run/libvirt /var/lib/libvirt/qemu
# Guests run as root. Besides tap devices, this matters for /dev/kvm (root-only here): with the
# default libvirt-qemu user, libvirt finds KVM "no longer available" on every call, throws its
# QEMU capability cache away and re-probes QEMU for ~15 s (seen in virQEMUCapsIsValid's debug log).
config_changed=no
if ! grep -qs '^user = "root"' /etc/libvirt/qemu.conf; then
  mkdir -p /etc/libvirt
  printf 'user = "root"\ngroup = "root"\n' >>/etc/libvirt/qemu.conf
  config_changed=yes
fi

if [[ $config_changed == yes ]] && pgrep -x libvirtd >/dev/null; then
  echo "libvirtd: restarting to apply qemu.conf"
  pkill -TERM -x libvirtd || true
  for _ in $(seq 40); do pgrep -x libvirtd >/dev/null || break; sleep 0.25; done
fi
pgrep -x virtlogd >/dev/null || virtlogd -d
# `libvirtd -d` exits 0 even when the daemon dies right after: poll until it answers.
pgrep -x libvirtd >/dev/null || libvirtd -d
for _ in $(seq 60); do
  answers && break
  sleep 0.5
done
if ! answers; then
  echo "libvirtd: did not answer on $uri; see /var/log/libvirt/" >&2
  exit 1
fi
echo "libvirtd: running ($uri, socket $socket)"
