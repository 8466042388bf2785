import { defineConfig } from 'vitest/config';

// Six projects so that `vitest run --project unit` stays fast and infrastructure is only started
// for the tests that need it. Global setups are idempotent: they reuse a running daemon.
export default defineConfig({
  test: {
    // One test file at a time across all projects: the integration projects share one libvirtd and one
    // API server, and an agent of one file must not collect another file's filters.
    maxWorkers: 1,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // CLI tests spawn node processes: generous on a loaded 2-core machine.
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'libvirt',
          include: ['test/integration/libvirt/**/*.test.ts', 'test/integration/netfilter/**/*.test.ts'],
          globalSetup: ['test/setup/libvirt.ts'],
          testTimeout: 120_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'kube',
          include: ['test/integration/kube/**/*.test.ts'],
          globalSetup: ['test/setup/kube.ts'],
          testTimeout: 120_000,
          hookTimeout: 1_800_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          // Real packets through libvirt's chains: a bridge, veth "VMs" in namespaces, probes with
          // real sockets (test/packet/lab.ts). Needs root; netlab.ts prepares and restores the host.
          name: 'packet',
          include: ['test/packet/**/*.test.ts'],
          globalSetup: ['test/setup/libvirt.ts', 'test/setup/netlab.ts'],
          testTimeout: 300_000,
          hookTimeout: 600_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/integration/e2e/**/*.test.ts'],
          // netlab: packets.test.ts runs the operator with real packets on the lab's bridge.
          globalSetup: ['test/setup/kube.ts', 'test/setup/libvirt.ts', 'test/setup/netlab.ts'],
          testTimeout: 600_000,
          hookTimeout: 1_800_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          // A real node: kubelet, containerd and kube-proxy run the operator's image installed by Helm;
          // the agent pod filters a container on the packet lab's bridge (test/node).
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          globalSetup: ['test/setup/libvirt.ts', 'test/setup/netlab.ts', 'test/setup/node.ts'],
          testTimeout: 600_000,
          hookTimeout: 1_800_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
