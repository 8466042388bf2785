#!/usr/bin/env bash
# Stops the libvirtd and virtlogd started by hack/libvirt-up.sh. Defined filters and domains stay.
set -euo pipefail
for d in libvirtd virtlogd; do
  if pgrep -x "$d" >/dev/null; then
    pkill -TERM -x "$d" || true
    for _ in $(seq 40); do pgrep -x "$d" >/dev/null || break; sleep 0.25; done
    pgrep -x "$d" >/dev/null && pkill -KILL -x "$d" || true
  fi
done
echo "libvirtd: stopped"
