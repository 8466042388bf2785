import { Agent } from '../agent/agent.js';
import { connectAgentLibvirt } from '../agent/libvirt-adapter.js';
import { InformerPolicySource } from '../agent/policy-source.js';
import { StatusWriter, loadKubeConfig, makeClients } from '../kube/index.js';
import { AgentConfig, agentFallbacks, loadConfig } from '../runtime/config.js';
import { startProbeServers } from '../runtime/http-server.js';
import { createLogger } from '../runtime/logger.js';
import { createMetrics } from '../runtime/metrics.js';
import { Shutdown } from '../runtime/shutdown.js';


/** Runs until SIGTERM/SIGINT. Ready once the caches synced and libvirt answered. */
export async function runAgent(argv: string[]): Promise<number> {
  const config = loadConfig(AgentConfig, argv, process.env, agentFallbacks(process.env));
  const log = createLogger(config.logLevel, 'agent').child({ node: config.nodeName });
  const metrics = createMetrics({ component: 'agent' });
  const shutdown = new Shutdown(log);
  shutdown.installSignalHandlers();

  const libvirt = await connectAgentLibvirt({ socketPath: config.libvirtSocket, uri: config.libvirtUri, log, metrics });
  shutdown.add('libvirt', () => libvirt.close());
  const clients = makeClients(loadKubeConfig(config.kubeconfig));
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
    libvirt,
    log,
    metrics,
    resyncMs: config.resyncPeriod,
    concurrency: config.concurrency,
  });
  const probe = { healthy: () => !shutdown.stopping, ready: () => agent.synced && libvirt.isConnected() };
  await startProbeServers(config, metrics.registry, probe, log, shutdown);
  shutdown.add('agent', () => agent.stop());
  log.info({ socket: config.libvirtSocket, uri: config.libvirtUri, resyncMs: config.resyncPeriod }, 'starting agent');
  await agent.start();
  await new Promise<void>((resolve) => shutdown.signal.addEventListener('abort', () => resolve()));
  return 0;
}
