import type { z } from 'zod';
import { LeaderElector, loadKubeConfig, makeClients, type KubeClients, type LeaderElectionOptions } from '../kube/index.js';
import { loadConfig } from './config.js';
import { startProbeServers } from './http-server.js';
import { createLogger, type Logger } from './logger.js';
import { createMetrics, type Metrics } from './metrics.js';
import { Shutdown } from './shutdown.js';

type Component = 'controller' | 'agent';

/** What every long-running command gets from the harness. */
export interface ProcessContext<C> {
  config: C;
  log: Logger;
  metrics: Metrics;
  clients: KubeClients;
  shutdown: Shutdown;
}

/** Leader election settings; the work starts only while this replica holds the Lease. */
export type LeaderElection = Pick<LeaderElectionOptions, 'namespace' | 'name' | 'identity' | 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'>;

/** What a command built on the harness is made of. */
export interface Service {
  /** Readiness (/readyz); liveness (/healthz) is the harness's. */
  ready: () => boolean;
  /** Prepares (connects, syncs caches); runs before leadership is sought. */
  prepare?: () => Promise<void>;
  /** Starts the work (with leader election: each time this replica starts leading, at most once). */
  run: () => Promise<void> | void;
  /** Stops the work; runs before the Lease is released. */
  stop: () => Promise<void>;
  leaderElection?: LeaderElection;
  /** Logged with "starting". */
  describe?: Record<string, unknown>;
}

/**
 * The one harness of the controller and the agent: configuration (flags, NWF_* variables,
 * fallbacks), the logger, the metrics of the component, the Kubernetes clients, /metrics /healthz
 * /readyz, ordered shutdown on SIGTERM/SIGINT, and leader election where asked. Resolves with the
 * exit code once shut down; losing leadership exits with 1 (the pod restarts, as client-go does).
 */
export async function runProcess<S extends z.ZodObject>(o: {
  component: Component;
  schema: S;
  argv: string[];
  fallbacks: Record<string, string | undefined>;
  /** Extra context for every log line (e.g. the node). */
  logBindings?: (config: z.infer<S>) => Record<string, unknown>;
  build: (ctx: ProcessContext<z.infer<S>>) => Promise<Service> | Service;
}): Promise<number> {
  const config = loadConfig(o.schema, o.argv, process.env, o.fallbacks) as z.infer<S> & {
    kubeconfig?: string;
    logLevel: Parameters<typeof createLogger>[0];
    metricsAddr: string;
    healthAddr: string;
  };
  const base = createLogger(config.logLevel, o.component);
  const log = o.logBindings ? base.child(o.logBindings(config)) : base;
  const metrics = createMetrics({ component: o.component });
  const shutdown = new Shutdown(log);
  shutdown.installSignalHandlers();
  const clients = makeClients(loadKubeConfig(config.kubeconfig));

  const service = await o.build({ config, log, metrics, clients, shutdown });
  await startProbeServers(config, metrics.registry, { healthy: () => !shutdown.stopping, ready: service.ready }, log, shutdown);
  // Closers run in reverse: the work stops first, then the Lease is released (client-go's
  // ReleaseOnCancel asks that the guarded work has finished before the release).
  let elector: LeaderElector | undefined;
  shutdown.add('leader election', () => elector?.stop());
  shutdown.add(o.component, () => service.stop());
  log.info({ ...service.describe, leaderElect: service.leaderElection !== undefined }, `starting ${o.component}`);
  await service.prepare?.();
  if (!service.leaderElection) await service.run();
  else {
    const le = service.leaderElection;
    elector = new LeaderElector({
      ...le,
      api: clients.coordination,
      log,
      onStartedLeading: () => {
        metrics.isLeader.set(1);
        void Promise.resolve(service.run()).catch((err: unknown) => {
          log.error({ err }, 'cannot start');
          void shutdown.run().then(() => process.exit(1));
        });
      },
      onStoppedLeading: () => {
        metrics.isLeader.set(0);
        void shutdown.run().then(() => process.exit(1));
      },
    });
    elector.start();
  }
  await new Promise<void>((resolve) => {
    if (shutdown.stopping) resolve();
    else shutdown.signal.addEventListener('abort', () => resolve());
  });
  return 0;
}
