import { parseArgs } from 'node:util';
import { evaluate, parsePacket, type NwFilter } from '../policy/index.js';
import { formatDiagnostic, loadAndCompile } from './load.js';
import { UsageError } from './usage-error.js';

const EXPLAIN_USAGE = 'nwfilter-operator explain -f <file|dir>... --vm <VMFilter> --packet "<in|out> <proto> <port> [from|to <ip>] [state]"';

export function runExplain(argv: string[], out: NodeJS.WritableStream): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      file: { type: 'string', short: 'f', multiple: true },
      vm: { type: 'string' },
      packet: { type: 'string', short: 'p' },
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
  const ip = vm.spec.parameters?.ip?.[0];
  const filters = new Map<string, NwFilter>([...compiled.filters].map(([n, f]) => [n, f.filter]));
  const decision = evaluate(vm.filter.filter.name, filters, { ...packet, ...(ip ? { local: ip } : {}) });
  out.write(`decision: ${decision.verdict.toUpperCase()}\n`);
  if (decision.rule) {
    const o = decision.rule.origin;
    const level = o.level + (('enforced' in o && o.enforced) ? ' (enforced)' : '');
    out.write(`level:    ${level}${o.kind === 'service' ? `, service ${o.service} ${o.direction} ${o.decision}` : o.kind === 'custom' ? `, custom rule ${o.index} of ${o.owner}` : ', default'}\n`);
    out.write(`rule:     priority ${decision.rule.priority} in filter ${decision.filter}: ${decision.rule.action} ${decision.rule.direction} ${decision.rule.protocol}` +
      `${decision.rule.dstPortStart !== undefined ? ` ${decision.rule.dstPortStart}${decision.rule.dstPortEnd !== decision.rule.dstPortStart ? `-${decision.rule.dstPortEnd}` : ''}` : ''}` +
      ` (${decision.rule.comment})\n`);
  } else {
    out.write('rule:     none matched; libvirt lets the packet pass\n');
  }
  out.write(`checked:  ${decision.considered} rule(s) in libvirt's priority order\n`);
  if (decision.unevaluated.length > 0) out.write(`note:     not evaluated (libvirt's own filters): ${decision.unevaluated.join(', ')}\n`);
  return 0;
}
