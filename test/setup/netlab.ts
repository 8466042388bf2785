import { execFileSync } from 'node:child_process';

/**
 * Host side of the packet lab for the packet project: hack/netlab.sh up (installs the tools when
 * missing, sets the sysctls the lab needs, saving the previous values) before the tests, and down
 * at teardown (restores the sysctls, sweeps whatever a failed run left: bindings on lab ports, lab
 * filters, namespaces, veths, the bridge). `down` leaves a lab alone that another live test process
 * holds. NWF_KEEP_NETLAB=1 skips `down`, to look at the lab after a run (hack/netlab.sh status).
 */
export default function setup(): () => void {
  execFileSync('bash', ['hack/netlab.sh', 'up'], { stdio: 'inherit', timeout: 600_000 });
  return () => {
    if (process.env.NWF_KEEP_NETLAB === '1') return;
    execFileSync('bash', ['hack/netlab.sh', 'down'], { stdio: 'inherit', timeout: 120_000 });
  };
}
