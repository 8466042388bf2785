import { z } from 'zod';
import { IcmpMatch, IpFamily, icmpFamilyRules } from './addresses.js';
import { withCel, type CelRule } from './cel.js';
import { Conditions, ObjectMeta, PortNumber, Realization, ServiceProtocol } from './common.js';

/** One protocol/port entry of a service. ICMP has no ports. */
export const ServicePort = withCel(
  z
    .object({
      protocol: ServiceProtocol.describe('tcp, udp, sctp or icmp (ICMP for IPv4, ICMPv6 for IPv6).'),
      family: IpFamily.optional().describe('ipv4 or ipv6 only; default: both families.'),
      icmp: IcmpMatch.optional().describe('Only this ICMP message type (and code), e.g. {name: echo-request}; only with protocol icmp.'),
      port: PortNumber.optional().describe('First (or only) port; required for tcp, udp and sctp.'),
      endPort: PortNumber.optional().describe('Last port of an inclusive range, e.g. FTP passive 1024-65535.'),
      side: z
        .enum(['server', 'client'])
        .default('server')
        .describe(
          'Whose port this is. server (default): clients connect to it, so "use" opens it outbound and "provide" inbound. ' +
            'client: the server sends to it, e.g. DHCP offers to udp 68, so "use" opens it inbound and "provide" outbound.',
        ),
      description: z.string().max(200).optional().describe('What this port is for, e.g. "passive data".'),
    })
    .strict(),
  [
    {
      rule: "self.protocol == 'icmp' || has(self.port)",
      message: 'port is required for tcp, udp and sctp',
      path: ['port'],
      holds: (v) => v.protocol === 'icmp' || v.port !== undefined,
    },
    {
      rule: "self.protocol != 'icmp' || (!has(self.port) && !has(self.endPort))",
      message: 'icmp takes no port',
      path: ['port'],
      holds: (v) => v.protocol !== 'icmp' || (v.port === undefined && v.endPort === undefined),
    },
    {
      rule: '!has(self.endPort) || (has(self.port) && self.endPort >= self.port)',
      message: 'endPort must be greater than or equal to port',
      path: ['endPort'],
      holds: (v) => v.endPort === undefined || (v.port !== undefined && v.endPort >= v.port),
    },
    {
      rule: "!has(self.icmp) || self.protocol == 'icmp'",
      message: 'icmp (type and code) is only allowed with protocol icmp',
      path: ['icmp'],
      holds: (v) => v.icmp === undefined || v.protocol === 'icmp',
    },
    ...(icmpFamilyRules as CelRule<{ family?: 'ipv4' | 'ipv6' | undefined; icmp?: IcmpMatch | undefined }>[]),
  ],
);
export type ServicePort = z.infer<typeof ServicePort>;

export const RiskLevel = z.enum(['low', 'medium', 'high', 'critical']);

export const ServicePolicySpec = z
  .object({
    displayName: z.string().max(100).optional().describe('Human-readable name, e.g. "Remote Desktop".'),
    description: z.string().max(1000).optional().describe('What the service is and why it is allowed or not.'),
    risk: RiskLevel.default('medium').describe('Risk level shown to operators: low, medium, high, critical.'),
    ports: z.array(ServicePort).min(1).max(32).describe('Protocols and ports that make up the service.'),
    use: z
      .boolean()
      .default(false)
      .describe('Global default: VMs may use the service as clients (outbound to these ports).'),
    provide: z
      .boolean()
      .default(false)
      .describe('Global default: VMs may provide the service as servers (inbound to these ports).'),
  })
  .strict()
  .describe('A network service and the global default for using and providing it.');
export type ServicePolicySpec = z.infer<typeof ServicePolicySpec>;

export const ServicePolicyStatus = z
  .object({
    observedGeneration: z.number().int().min(0).optional(),
    conditions: Conditions.optional(),
    vms: Realization.optional().describe('VMs whose effective filter includes this service.'),
  })
  .describe('Observed state, written by the controller.');
export type ServicePolicyStatus = z.infer<typeof ServicePolicyStatus>;

export const ServicePolicy = z.looseObject({
  apiVersion: z.string(),
  kind: z.literal('ServicePolicy'),
  metadata: ObjectMeta,
  spec: ServicePolicySpec,
  status: ServicePolicyStatus.optional(),
});
export type ServicePolicy = z.infer<typeof ServicePolicy>;
