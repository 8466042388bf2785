import { parseArgs } from 'node:util';
import { icmpTypeNumber } from '../api/index.js';
import {
  EPHEMERAL_PORT,
  ICMP_REQUESTS,
  UNKNOWN_ADDRESS,
  evaluate,
  evaluateDelivery,
  explainConnection,
  firstPacketState,
  instantiateTree,
  iptablesText,
  parsePacket,
  setMembersOf,
  setPortsText,
  type ConnectionResult,
  type Decision,
  type NwFilter,
  type NwRule,
} from '../policy/index.js';
import { formatDiagnostic, loadAndCompile } from './load.js';
import { UsageError } from './usage-error.js';

export const EXPLAIN_USAGE =
  'nwfilter-operator explain -f <file|dir>... --vm <VMFilter> ' +
  '--packet "<in|out> <tcp|udp|sctp|icmp> [port] [<icmp-type-name> | type <n> [code <n>]] [from|to <ip>] [sport <n>] [ipv6] [host]" [--closed] [--json]';

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
  const icmp = rule.icmpType !== undefined ? ` type ${rule.icmpType}${rule.icmpCode !== undefined ? `/${rule.icmpCode}` : ''}` : '';
  // A group rule is an `all` rule whose kernel set carries the addresses and the ports.
  const set = rule.set
    ? ` with set ${rule.set.name} (${rule.set.flags}: AddressGroup ${rule.set.group}${rule.set.ports ? ` x ${setPortsText(rule.set.ports)}` : ''})`
    : '';
  return `priority ${rule.priority} in filter ${filter}: ${rule.action} ${rule.direction} ${rule.protocol}${ports}${icmp}${set} (${rule.comment})`;
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
  const local = (family === 6 ? vm.spec.parameters?.ipv6?.[0] : vm.spec.parameters?.ip?.[0]) ?? UNKNOWN_ADDRESS[family];
  const remote = packet.remote ?? UNKNOWN_REMOTE[family];
  const filters = new Map<string, NwFilter>([...compiled.filters].map(([n, f]) => [n, f.filter]));
  const root = vm.filter.filter.name;
  // Address groups and peers: the members their kernel sets hold for this compile.
  const sets = setMembersOf(vm.sets);
  const icmpType = packet.icmp ? icmpTypeNumber({ ...packet.icmp }, family) : undefined;
  if (packet.icmp && icmpType === undefined) throw new UsageError(`ICMP type ${packet.icmp.name} does not exist in IPv${family}`);
  // An ICMP message other than an echo request starts no connection: one packet on its own.
  if (icmpType !== undefined && icmpType !== [...ICMP_REQUESTS[family].keys()][0]) {
    const { instances } = instantiateTree(root, filters);
    const [src, dst] = packet.direction === 'in' ? [remote, local] : [local, remote];
    const q = { direction: packet.direction, family, protocol: 'icmp' as const, src, dst, icmpType, icmpCode: packet.icmp?.code ?? 0, remoteIsHost: packet.remoteIsHost === true };
    const d = evaluateDelivery(instances, q, sets);
    const state = firstPacketState(family, family === 4 ? 'icmp' : 'icmpv6', icmpType);
    const instance = d.instance ? iptablesText(d.instance, 'PORT') : null;
    if (values.json) {
      out.write(JSON.stringify({ decision: d.verdict, rule: d.instance ? { ...d.instance.rule, filter: d.instance.filter } : null, ctstate: state, instance }, null, 2) + '\n');
      return 0;
    }
    out.write(`decision: ${d.verdict.toUpperCase()}\n`);
    out.write(`packet:   ICMPv${family === 4 ? '4' : '6'} type ${icmpType} code ${q.icmpCode}, on its own: conntrack calls it ${state}\n`);
    if (d.instance) {
      out.write(`level:    ${describeRule(d.instance.rule)}\n`);
      out.write(`rule:     ${ruleLine(d.instance.rule, d.instance.filter)}\n`);
      out.write(`by:       ${instance}\n`);
    } else {
      out.write(`rule:     none matched (${d.considered} looked at): the host's own chains decide\n`);
    }
    return 0;
  }
  const first = evaluate(root, filters, { ...packet, local, remote }, sets);
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
  }, sets);
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
