import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';

/** Go-style durations such as 30s, 5m, 1h, 250ms. */
export const Duration = z
  .string()
  .regex(/^\d+(ms|s|m|h)$/, 'must be a duration such as 30s, 5m or 1h')
  .transform((s) => {
    const n = Number(s.match(/^\d+/)![0]);
    const unit = s.slice(String(n).length);
    return n * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as Record<string, number>)[unit]!;
  });

const LogLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);
const Addr = z.string().regex(/^([\w.-]*):(\d{1,5})$/, 'must be [host]:port, e.g. :8080');
const Bool = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);

export const ControllerConfig = z.object({
  kubeconfig: z.string().optional(),
  metricsAddr: Addr.default(':8080'),
  healthAddr: Addr.default(':8081'),
  leaderElect: Bool.prefault(true),
  leaderElectionNamespace: z.string().min(1).default('default'),
  leaderElectionId: z.string().min(1).default('nwfilter-operator-controller'),
  leaseDuration: Duration.prefault('15s'),
  renewDeadline: Duration.prefault('10s'),
  retryPeriod: Duration.prefault('2s'),
  identity: z.string().min(1),
  resyncPeriod: Duration.prefault('10m'),
  statusCoalesce: Duration.prefault('1s'),
  logLevel: LogLevel.default('info'),
});
export type ControllerConfig = z.infer<typeof ControllerConfig>;

export const AgentConfig = z.object({
  kubeconfig: z.string().optional(),
  nodeName: z.string().min(1), // also from env NODE_NAME (downward API)
  libvirtSocket: z.string().min(1).default('/var/run/libvirt/libvirt-sock'),
  // The driver whose domains this agent protects (qemu:///system, lxc:///system, ...). Filters are the
  // nwfilter driver's, shared by every driver of the daemon.
  libvirtUri: z
    .string()
    .regex(/^[a-z][a-z0-9+.-]*:\/\/\S*$/, 'must be a libvirt URI such as qemu:///system or lxc:///system')
    .default('qemu:///system'),
  metricsAddr: Addr.default(':9090'),
  healthAddr: Addr.default(':9091'),
  resyncPeriod: Duration.prefault('5m'),
  concurrency: z.coerce.number().int().min(1).max(64).default(4),
  // A domain whose VMFilter cannot be compiled and that carries no filter of ours yet gets a
  // drop-all filter until it compiles (docs/status.md, Quarantined).
  quarantine: Bool.prefault(true),
  logLevel: LogLevel.default('info'),
});
export type AgentConfig = z.infer<typeof AgentConfig>;

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
