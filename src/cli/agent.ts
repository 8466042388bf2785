import { Agent } from '../agent/agent.js';
import { ipsetKernelSets } from '../agent/kernel-sets.js';
import { connectAgentLibvirt } from '../agent/libvirt-adapter.js';
import { InformerPolicySource } from '../agent/policy-source.js';
import { StatusWriter } from '../kube/index.js';
import { AgentConfig, agentFallbacks } from '../runtime/config.js';
import { runProcess } from '../runtime/process.js';

/** Runs until SIGTERM/SIGINT. Ready once the caches synced and libvirt answered. */
export function runAgent(argv: string[]): Promise<number> {
  return runProcess({
    component: 'agent',
    schema: AgentConfig,
    argv,
    fallbacks: agentFallbacks(process.env),
    logBindings: (config) => ({ node: config.nodeName }),
    build: async ({ config, log, metrics, clients, shutdown }) => {
      const libvirt = await connectAgentLibvirt({ socketPath: config.libvirtSocket, uri: config.libvirtUri, log, metrics });
      shutdown.add('libvirt', () => libvirt.close());
      const writer = new StatusWriter(clients.custom, `nwfilter-operator-agent-${config.nodeName}`.slice(0, 128));
      const agent = new Agent({
        nodeName: config.nodeName,
        source: new InformerPolicySource(clients, log, metrics, { nodeName: config.nodeName, scope: config.watchScope }),
        // The reporter compares with the object's current status, so the writer's own memory is bypassed.
        status: (name, uid, fields) => {
          writer.forget('VMFilter', name, uid);
          return writer.write('VMFilter', name, uid, fields);
        },
        quarantine: config.quarantine,
        ...(config.kernelSets === 'ipset' ? { kernelSets: ipsetKernelSets() } : {}),
        libvirt,
        log,
        metrics,
        resyncMs: config.resyncPeriod,
        concurrency: config.concurrency,
      });
      return {
        ready: () => agent.synced && libvirt.isConnected(),
        run: () => agent.start(),
        stop: () => agent.stop(),
        describe: { socket: config.libvirtSocket, uri: config.libvirtUri, resyncMs: config.resyncPeriod, watchScope: config.watchScope, kernelSets: config.kernelSets },
      };
    },
  });
}
