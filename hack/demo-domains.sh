#!/usr/bin/env bash
# Defines (does not start) one libvirt domain per example VMFilter, so that the demo's agent has
# interfaces to attach filters to. Idempotent. Usage: hack/demo-domains.sh [define|undefine]
set -euo pipefail
uri=${LIBVIRT_DEFAULT_URI:-qemu:///system}
action=${1:-define}
domains=(eng-web-01 eng-db-01 fin-desk-01 lab-standalone)
i=0
for name in "${domains[@]}"; do
  i=$((i + 1))
  if [[ $action == undefine ]]; then
    virsh -c "$uri" destroy "$name" >/dev/null 2>&1 || true
    virsh -c "$uri" undefine "$name" >/dev/null 2>&1 || true
    continue
  fi
  if virsh -c "$uri" dominfo "$name" >/dev/null 2>&1; then continue; fi
  xml=$(mktemp)
  cat >"$xml" <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <interface type='ethernet'>
      <mac address='52:54:00:00:10:0$i'/>
      <target dev='nwfdemo$i' managed='yes'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
XML
  virsh -c "$uri" define "$xml" >/dev/null
  rm -f "$xml"
  echo "defined domain $name"
done
