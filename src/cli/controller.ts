import { Controller } from '../controller/controller.js';
import { ControllerConfig, controllerFallbacks } from '../runtime/config.js';
import { runProcess } from '../runtime/process.js';

/** Runs until SIGTERM/SIGINT; exits non-zero when leadership is lost (the pod restarts, as client-go does). */
export function runController(argv: string[]): Promise<number> {
  return runProcess({
    component: 'controller',
    schema: ControllerConfig,
    argv,
    fallbacks: controllerFallbacks(process.env),
    build: ({ config, log, metrics, clients }) => {
      const controller = new Controller({ clients, log, metrics, identity: config.identity, resyncMs: config.resyncPeriod, coalesceMs: config.statusCoalesce });
      return {
        ready: () => controller.synced,
        // The caches sync on every replica, so that a new leader starts with them warm.
        prepare: () => controller.startInformers(),
        run: () => controller.run(),
        stop: () => controller.stop(),
        ...(config.leaderElect
          ? {
              leaderElection: {
                namespace: config.leaderElectionNamespace,
                name: config.leaderElectionId,
                identity: config.identity,
                leaseDurationMs: config.leaseDuration,
                renewDeadlineMs: config.renewDeadline,
                retryPeriodMs: config.retryPeriod,
              },
            }
          : {}),
        describe: { identity: config.identity },
      };
    },
  });
}
