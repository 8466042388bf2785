import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';

/** Go-style durations: 30s, 5m, 1h, 250ms, and sums of them such as 1m30s or 1h15m. */
export const Duration = z
  .string()
  .regex(/^(\d+(ms|s|m|h))+$/, 'must be a duration such as 30s, 5m, 1h or 1m30s')
  .transform((s) => {
    const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
    let total = 0;
    for (const m of s.matchAll(/(\d+)(ms|s|m|h)/g)) total += Number(m[1]) * unit[m[2]!]!;
    return total;
  });

const LogLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);
const Addr = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[\w.-]*):(\d{1,5})$/, 'must be [host]:port, e.g. :8080, 127.0.0.1:8080 or [::]:8080');
const Bool = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);

export const ControllerConfig = z.object({
  kubeconfig: z.string().optional().describe('kubeconfig file; default: in-cluster config, then $KUBECONFIG'),
  metricsAddr: Addr.default(':8080').describe('[host]:port of /metrics'),
  healthAddr: Addr.default(':8081').describe('[host]:port of /healthz and /readyz'),
  leaderElect: Bool.prefault(true).describe('run only while holding the Lease (one active replica)'),
  leaderElectionNamespace: z.string().min(1).default('default').describe('namespace of the Lease (default $POD_NAMESPACE, else default)'),
  leaderElectionId: z.string().min(1).default('nwfilter-operator-controller').describe('name of the Lease'),
  leaseDuration: Duration.prefault('15s').describe('how long a Lease that stopped changing is respected'),
  renewDeadline: Duration.prefault('10s').describe('the leader steps down when it could not renew for this long'),
  retryPeriod: Duration.prefault('2s').describe('time between Lease attempts'),
  identity: z.string().min(1).describe('this replica in the Lease (default $POD_NAME, else host-pid)'),
  resyncPeriod: Duration.prefault('10m').describe('full pass over every object'),
  statusCoalesce: Duration.prefault('1s').describe('department and service status is written at most once per this period'),
  logLevel: LogLevel.default('info').describe('trace, debug, info, warn, error, fatal or silent'),
});
export type ControllerConfig = z.infer<typeof ControllerConfig>;

export const AgentConfig = z.object({
  kubeconfig: z.string().optional().describe('kubeconfig file; default: in-cluster config, then $KUBECONFIG'),
  nodeName: z.string().min(1).describe('this node (required; default $NODE_NAME, the downward API)'),
  libvirtSocket: z.string().min(1).default('/var/run/libvirt/libvirt-sock').describe("libvirtd's read-write unix socket"),
  // The driver whose domains this agent protects (qemu:///system, lxc:///system, ...). Filters are the
  // nwfilter driver's, shared by every driver of the daemon.
  libvirtUri: z
    .string()
    .regex(/^[a-z][a-z0-9+.-]*:\/\/\S*$/, 'must be a libvirt URI such as qemu:///system or lxc:///system')
    .default('qemu:///system')
    .describe('the libvirt driver whose domains are protected (qemu:///system, lxc:///system, ...)'),
  metricsAddr: Addr.default(':9090').describe('[host]:port of /metrics'),
  healthAddr: Addr.default(':9091').describe('[host]:port of /healthz and /readyz'),
  resyncPeriod: Duration.prefault('5m').describe('full re-verification against libvirt (drift repair, hot-plug on LXC, garbage collection)'),
  concurrency: z.coerce.number().int().min(1).max(64).default(4).describe('VMs applied at the same time'),
  // A domain whose VMFilter cannot be compiled and that carries no filter of ours yet gets a
  // drop-all filter until it compiles (docs/status.md, Quarantined).
  quarantine: Bool.prefault(true).describe('drop all IP traffic of a domain whose VMFilter cannot be compiled yet'),
  // node: only this node's VMFilters reach the agent (CRD field selectors, Kubernetes 1.31+; older
  // API servers are detected and get the cluster-wide watch).
  watchScope: z
    .enum(['node', 'cluster'])
    .default('node')
    .describe("which VMFilters the agent watches: node (pinned here, unpinned, or held by this node) or cluster (all)"),
  // Address groups and peer selectors are matched through kernel IP sets the agent keeps in the
  // host's network namespace (needs CAP_NET_ADMIN there and the ipset tool). off: such VMs are
  // reported AddressSetError and keep their last filter; every other VM is unaffected.
  kernelSets: z.enum(['ipset', 'off']).default('ipset').describe('how address groups reach the kernel: ipset (kernel IP sets) or off'),
  logLevel: LogLevel.default('info').describe('trace, debug, info, warn, error, fatal or silent'),
});
export type AgentConfig = z.infer<typeof AgentConfig>;

/** `--flag <default>  description` lines for a command's help, from its schema. */
export function flagHelp(schema: z.ZodObject): string[] {
  const rows = Object.entries(schema.shape).map(([key, field]) => {
    const f = field as z.ZodType & { _zod: { def: { type: string; defaultValue?: unknown } } };
    const def = f._zod.def;
    const fallback = def.type === 'default' || def.type === 'prefault' ? ` (default ${String(def.defaultValue)})` : '';
    return [`--${camelToFlag(key)}`, `${f.description ?? ''}${fallback}; env ${camelToEnv(key)}`] as const;
  });
  const width = Math.max(...rows.map(([flag]) => flag.length));
  return rows.map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`);
}

const camelToFlag = (k: string): string => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
const camelToEnv = (k: string): string => 'NWF_' + k.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Flags win over NWF_* environment variables, which win over defaults. Errors name the flag.
 * `fallbacks` supplies values from well-known variables (NODE_NAME, POD_NAMESPACE, ...).
 */
export function loadConfig<S extends z.ZodObject>(schema: S, argv: string[], env: NodeJS.ProcessEnv, fallbacks: Record<string, string | undefined> = {}): z.infer<S> {
  const keys = Object.keys(schema.shape);
  const options = Object.fromEntries(keys.map((k) => [camelToFlag(k), { type: 'string' as const }]));
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string | undefined>;
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const raw: Record<string, unknown> = {};
  for (const k of keys) {
    const v = values[camelToFlag(k)] ?? env[camelToEnv(k)] ?? fallbacks[k];
    if (v !== undefined && v !== '') raw[k] = v;
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues
        .map((i) => {
          const key = String(i.path[0] ?? '');
          const message = raw[key] === undefined ? 'is required' : i.message;
          return `--${camelToFlag(key)} (env ${camelToEnv(key)}): ${message}`;
        })
        .join('\n'),
    );
  }
  return result.data;
}

export function controllerFallbacks(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  return { leaderElectionNamespace: env.POD_NAMESPACE, identity: env.POD_NAME ?? `${hostname()}-${process.pid}` };
}

export function agentFallbacks(env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  return { nodeName: env.NODE_NAME };
}
