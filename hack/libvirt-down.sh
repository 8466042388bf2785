#!/usr/bin/env bash
# Stops the libvirtd and virtlogd started by hack/libvirt-up.sh (found through their pid files).
# Defined filters and domains stay; running QEMU guests keep running and are picked up again by the
# next libvirtd. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
source ./libvirt-env.sh
stop_daemon libvirtd
stop_daemon virtlogd
echo "libvirtd: stopped"
