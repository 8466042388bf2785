import { parseArgs } from 'node:util';
import {
  EPHEMERAL_PORT,
  UNKNOWN_ADDRESS,
  evaluate,
  explainConnection,
  iptablesText,
  parsePacket,
  type ConnectionResult,
  type Decision,
  type NwFilter,
  type NwRule,
} from '../policy/index.js';
import { formatDiagnostic, loadAndCompile } from './load.js';
import { UsageError } from './usage-error.js';

export const EXPLAIN_USAGE =
  'nwfilter-operator explain -f <file|dir>... --vm <VMFilter> --packet "<in|out> <tcp|udp|sctp|icmp> [port] [from|to <ip>] [sport <n>] [host]" [--closed] [--json]';

/** A documentation address stands in for the remote side when --packet names none. */
const UNKNOWN_REMOTE = { 4: '192.0.2.1', 6: '2001:db8::1' } as const;

function describeRule(rule: NwRule): string {
  const o = rule.origin;
  const level = o.level + ('enforced' in o && o.enforced ? ' (enforced)' : '');
  if (o.kind === 'service') return `${level}, service ${o.service} ${o.direction} ${o.decision}`;
  if (o.kind === 'custom') return `${level}, custom rule ${o.index} of ${o.owner}`;
  if (o.kind === 'base') return `${level}, base rule (${o.what})`;
  return `${level}, default`;
}

function ruleLine(rule: NwRule, filter: string | undefined): string {
  const ports = rule.dstPortStart !== undefined ? ` ${rule.dstPortStart}${rule.dstPortEnd !== rule.dstPortStart ? `-${rule.dstPortEnd}` : ''}` : '';
  return `priority ${rule.priority} in filter ${filter}: ${rule.action} ${rule.direction} ${rule.protocol}${ports} (${rule.comment})`;
}

function writeText(out: NodeJS.WritableStream, first: Decision, conn: ConnectionResult, port: string): void {
  out.write(`decision: ${first.verdict.toUpperCase()}\n`);
  if (first.rule) {
    out.write(`level:    ${describeRule(first.rule)}\n`);
    out.write(`rule:     ${ruleLine(first.rule, first.filter)}\n`);
  } else {
    out.write('rule:     none matched; the packet leaves libvirt\'s chains\n');
  }
  out.write(`outcome:  ${conn.outcome} (as the initiator sees it)\n`);
  out.write('packets:\n');
  for (const step of conn.steps) {
    if (!step.packet || !step.decision) {
      out.write(`  - ${step.what}: sent by the host itself, no libvirt chain sees it\n`);
      continue;
    }
    const d = step.decision;
    const p = step.packet;
    out.write(`  - ${step.what} in ${p.chain}-${port} (IPv${p.family}, ${p.ctstate} ${p.ctdir}): ${d.verdict.toUpperCase()}\n`);
    if (d.instance) {
      out.write(`      by ${iptablesText(d.instance, port)}\n`);
      out.write(`      from ${d.instance.swapped ? 'the reply side of ' : ''}${describeRule(d.instance.rule)}: ${ruleLine(d.instance.rule, d.instance.filter)}\n`);
    } else {
      out.write(`      no rule matched (${d.considered} looked at): the host's own chains decide\n`);
    }
  }
  if (conn.outcome === 'refused' && first.verdict === 'reject') {
    out.write('note:     a REJECT is sent by the host from its own address; without a route to the sender via the bridge it is a drop\n');
  }
  if (conn.unevaluated.length > 0) {
    out.write(`note:     not modelled (libvirt's own filters, applied in ebtables before these chains): ${conn.unevaluated.join(', ')}\n`);
  }
}

export function runExplain(argv: string[], out: NodeJS.WritableStream): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      file: { type: 'string', short: 'f', multiple: true },
      vm: { type: 'string' },
      packet: { type: 'string', short: 'p' },
      closed: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!values.vm || !values.packet) throw new UsageError(`missing --vm or --packet\nusage: ${EXPLAIN_USAGE}`);
  let packet;
  try {
    packet = parsePacket(values.packet);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const compiled = loadAndCompile(values.file ?? []);
  const vm = compiled.vms.get(values.vm);
  if (!vm) throw new UsageError(`VMFilter "${values.vm}" not found in the input`);
  if (!vm.ok) throw new UsageError(vm.diagnostics.map(formatDiagnostic).join('\n'));
  const family = packet.family ?? 4;
  const local = vm.spec.parameters?.ip?.find((ip) => ip.includes(':') === (family === 6)) ?? UNKNOWN_ADDRESS[family];
  const remote = packet.remote ?? UNKNOWN_REMOTE[family];
  const filters = new Map<string, NwFilter>([...compiled.filters].map(([n, f]) => [n, f.filter]));
  const root = vm.filter.filter.name;
  const first = evaluate(root, filters, { ...packet, local, remote });
  const conn = explainConnection(root, filters, {
    direction: packet.direction,
    protocol: packet.protocol,
    family,
    ...(packet.port !== undefined ? { port: packet.port } : {}),
    sourcePort: packet.sourcePort ?? EPHEMERAL_PORT,
    vmAddress: local,
    remoteAddress: remote,
    remoteIsHost: packet.remoteIsHost === true,
    listening: !values.closed,
  });
  if (values.json) {
    out.write(
      JSON.stringify(
        {
          decision: first.verdict,
          rule: first.rule ? { ...first.rule, filter: first.filter } : null,
          outcome: conn.outcome,
          packets: conn.steps.map((s) => ({
            what: s.what,
            chain: s.packet?.chain ?? null,
            verdict: s.decision?.verdict ?? 'unfiltered',
            instance: s.decision?.instance ? iptablesText(s.decision.instance, 'PORT') : null,
          })),
          unevaluated: conn.unevaluated,
        },
        null,
        2,
      ) + '\n',
    );
    return 0;
  }
  writeText(out, first, conn, 'PORT');
  return 0;
}
