import { Controller } from '../controller/controller.js';
import { LeaderElector, loadKubeConfig, makeClients } from '../kube/index.js';
import { ControllerConfig, controllerFallbacks, loadConfig } from '../runtime/config.js';
import { startProbeServers } from '../runtime/http-server.js';
import { createLogger } from '../runtime/logger.js';
import { createMetrics } from '../runtime/metrics.js';
import { Shutdown } from '../runtime/shutdown.js';


/** Runs until SIGTERM/SIGINT; exits non-zero when leadership is lost (the pod restarts, as client-go does). */
export async function runController(argv: string[]): Promise<number> {
  const config = loadConfig(ControllerConfig, argv, process.env, controllerFallbacks(process.env));
  const log = createLogger(config.logLevel, 'controller');
  const metrics = createMetrics({ component: 'controller' });
  const shutdown = new Shutdown(log);
  shutdown.installSignalHandlers();

  const clients = makeClients(loadKubeConfig(config.kubeconfig));
  const controller = new Controller({ clients, log, metrics, identity: config.identity, resyncMs: config.resyncPeriod, coalesceMs: config.statusCoalesce });
  let elector: LeaderElector | undefined;
  await startProbeServers(config, metrics.registry, { healthy: () => !shutdown.stopping, ready: () => controller.synced }, log, shutdown);
  // Closers run in reverse: the controller stops first, then the lease is released (client-go's
  // ReleaseOnCancel asks that the guarded work has finished before the release).
  shutdown.add('leader election', () => elector?.stop());
  shutdown.add('controller', () => controller.stop());
  log.info({ identity: config.identity, leaderElect: config.leaderElect }, 'starting controller');
  await controller.startInformers();
  if (!config.leaderElect) {
    controller.run();
  } else {
    elector = new LeaderElector({
      api: clients.coordination,
      namespace: config.leaderElectionNamespace,
      name: config.leaderElectionId,
      identity: config.identity,
      leaseDurationMs: config.leaseDuration,
      renewDeadlineMs: config.renewDeadline,
      retryPeriodMs: config.retryPeriod,
      log,
      onStartedLeading: () => {
        metrics.isLeader.set(1);
        controller.run();
      },
      onStoppedLeading: () => {
        metrics.isLeader.set(0);
        void shutdown.run().then(() => process.exit(1));
      },
    });
    elector.start();
  }
  await new Promise<void>((resolve) => shutdown.signal.addEventListener('abort', () => resolve()));
  return 0;
}
