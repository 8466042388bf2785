import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const PREFIX = 'nwfilter_operator_';

/**
 * Every metric of the operator, on a registry of its own so tests can create several side by side.
 * Names are part of the contract with the Grafana dashboard in the Helm chart.
 */
export function createMetrics(options: { defaultMetrics?: boolean; component?: 'controller' | 'agent' } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: PREFIX });
  const registers = [registry];
  // Each binary exports only its own metrics: a controller reporting `libvirt_connected 0` (or an
  // agent `leader 0`) would fire an alert on it and skew the dashboard's ratios. The metric objects
  // exist either way, so shared code can update them; unexported ones are simply not registered.
  const agentOnly = options.component === 'controller' ? [] : registers;
  const controllerOnly = options.component === 'agent' ? [] : registers;
  return {
    registry,
    reconcileTotal: new Counter({
      name: `${PREFIX}reconcile_total`,
      help: 'Reconciles by kind and result (success, error, requeue).',
      labelNames: ['kind', 'result'] as const,
      registers,
    }),
    reconcileDuration: new Histogram({
      name: `${PREFIX}reconcile_duration_seconds`,
      help: 'Duration of one reconcile.',
      labelNames: ['kind'] as const,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60],
      registers,
    }),
    queueDepth: new Gauge({ name: `${PREFIX}queue_depth`, help: 'Keys waiting in a work queue.', labelNames: ['queue'] as const, registers }),
    queueRetries: new Counter({ name: `${PREFIX}queue_retries_total`, help: 'Keys requeued with backoff after an error.', labelNames: ['queue'] as const, registers }),
    libvirtCallDuration: new Histogram({
      name: `${PREFIX}libvirt_call_duration_seconds`,
      help: 'libvirt RPC call latency by operation and outcome.',
      labelNames: ['op', 'ok'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
      registers: agentOnly,
    }),
    libvirtWrites: new Counter({
      name: `${PREFIX}libvirt_writes_total`,
      help: 'libvirt write calls (define, undefine, update-device) by operation.',
      labelNames: ['op'] as const,
      registers: agentOnly,
    }),
    libvirtConnected: new Gauge({ name: `${PREFIX}libvirt_connected`, help: '1 while the agent is connected to libvirtd.', registers: agentOnly }),
    managedFilters: new Gauge({ name: `${PREFIX}managed_filters`, help: 'nwfilters managed by this agent on its node.', registers: agentOnly }),
    driftRepairs: new Counter({
      name: `${PREFIX}drift_repairs_total`,
      help: 'Managed filters or interface bindings changed or removed outside the operator and restored.',
      labelNames: ['what'] as const,
      registers: agentOnly,
    }),
    errors: new Counter({ name: `${PREFIX}errors_total`, help: 'Errors by component.', labelNames: ['component'] as const, registers }),
    informerRestarts: new Counter({
      name: `${PREFIX}informer_restarts_total`,
      help: 'Watches restarted after an error.',
      labelNames: ['kind'] as const,
      registers,
    }),
    statusWrites: new Counter({ name: `${PREFIX}status_writes_total`, help: 'Status patches sent.', labelNames: ['kind'] as const, registers }),
    resyncs: new Counter({ name: `${PREFIX}resyncs_total`, help: 'Full passes of the agent over its VMs against libvirt (periodic or after a reconnect).', registers: agentOnly }),
    protectionStates: new Gauge({
      name: `${PREFIX}vm_protection`,
      help: "VMFilters this agent holds, by the reason of their Applied condition (Applied, Quarantined, NoInterfaces, ...).",
      labelNames: ['reason'] as const,
      registers: agentOnly,
    }),
    watchedVmFilters: new Gauge({
      name: `${PREFIX}watched_vmfilters`,
      help: "VMFilters in this agent's view (pinned to its node, unpinned, or held by it).",
      registers: agentOnly,
    }),
    addressSetSyncs: new Counter({
      name: `${PREFIX}address_set_syncs_total`,
      help: 'Syncs of the kernel IP sets of address groups and peer selectors, by result (ok, error).',
      labelNames: ['result'] as const,
      registers: agentOnly,
    }),
    addressSetEntries: new Gauge({
      name: `${PREFIX}address_set_entries`,
      help: 'Entries in the kernel IP sets this agent keeps (a port range counts once).',
      registers: agentOnly,
    }),
    isLeader: new Gauge({ name: `${PREFIX}leader`, help: '1 while this controller replica holds the lease.', registers: controllerOnly }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
