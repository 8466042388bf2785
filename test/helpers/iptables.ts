// Reads the chains libvirt installed for one port (iptables -S / ip6tables -S) into records that can
// be compared with the instantiation model of src/policy/instantiate.ts.
import { execFileSync } from 'node:child_process';
import { ipv4ToInt, type Chain, type Family, type RuleInstance } from '../../src/policy/index.js';

/** One iptables rule reduced to what decides a packet's fate (comments dropped). */
export interface ChainRule {
  source?: string;
  destination?: string;
  protocol: string;
  sport?: string;
  dport?: string;
  icmpType?: string;
  /** `-m set --match-set <name> <src|dst>`, as "<name> <dir>". */
  set?: string;
  ctstate?: string;
  ctdir?: string;
  target: string;
  rejectWith?: string;
}

/** Splits an `iptables -S` line into words, keeping quoted strings (comments) whole. */
function words(line: string): string[] {
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

const PROTOCOL_NAMES: Record<string, string> = { 'ipv6-icmp': 'icmpv6', icmpv6: 'icmpv6' };

export function parseRuleLine(line: string): { chain: string; rule: ChainRule } {
  const w = words(line);
  if (w[0] !== '-A') throw new Error(`not a rule: ${line}`);
  const rule: ChainRule = { protocol: 'all', target: '' };
  for (let i = 2; i < w.length; i++) {
    const value = w[i + 1];
    switch (w[i]) {
      case '-s': rule.source = value!; i++; break;
      case '-d': rule.destination = value!; i++; break;
      case '-p': rule.protocol = PROTOCOL_NAMES[value!] ?? value!; i++; break;
      case '--sport': rule.sport = value!; i++; break;
      case '--dport': rule.dport = value!; i++; break;
      case '--icmp-type': case '--icmpv6-type': rule.icmpType = value!; i++; break;
      case '--ctstate': rule.ctstate = value!.split(',').sort().join(','); i++; break;
      case '--ctdir': rule.ctdir = value!; i++; break;
      case '-j': rule.target = value!; i++; break;
      case '--reject-with': rule.rejectWith = value!; i++; break;
      case '--match-set': rule.set = `${value!} ${w[i + 2]!}`; i += 2; break;
      case '--comment': i++; break;
      case '-m': i++; break;
      default: throw new Error(`unexpected "${w[i]}" in: ${line}`);
    }
  }
  return { chain: w[1]!, rule };
}

/** The rules of one of libvirt's chains for `port`, in order. */
export function readChain(family: Family, chain: Chain, port: string): ChainRule[] {
  const out = execFileSync(family === 4 ? 'iptables' : 'ip6tables', ['-w', '-S', `${chain}-${port}`], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((l) => l.startsWith('-A '))
    .map((l) => parseRuleLine(l).rule);
}

/** iptables prints the network address of a CIDR (host bits cleared), as the kernel matches it. */
function cidr(c: { address: string; prefix: number } | undefined, family: Family): string | undefined {
  // A /0 matches every address: iptables does not print it.
  if (!c || c.prefix === 0) return undefined;
  if (family === 6) return `${c.address}/${c.prefix}`;
  const mask = c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0;
  const n = (ipv4ToInt(c.address) & mask) >>> 0;
  return `${[n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')}/${c.prefix}`;
}
const range = (r: { start: number; end: number } | undefined): string | undefined => (r ? (r.start === r.end ? String(r.start) : `${r.start}:${r.end}`) : undefined);

/** The model's instance in the same form as a parsed iptables line. */
export function modelRule(inst: RuleInstance): ChainRule {
  const r: ChainRule = { protocol: inst.protocol, target: inst.target };
  const s = cidr(inst.source, inst.family);
  const d = cidr(inst.destination, inst.family);
  if (s) r.source = s;
  if (d) r.destination = d;
  if (inst.sport) r.sport = range(inst.sport)!;
  if (inst.dport) r.dport = range(inst.dport)!;
  if (inst.icmpType !== undefined) r.icmpType = inst.icmpCode !== undefined ? `${inst.icmpType}/${inst.icmpCode}` : String(inst.icmpType);
  if (inst.set) r.set = `${inst.set.name} ${inst.set.dir}`;
  if (inst.ctstate) r.ctstate = [...inst.ctstate].sort().join(',');
  if (inst.ctdir) r.ctdir = inst.ctdir;
  // libvirt adds no --reject-with: iptables' default answer is port unreachable.
  if (inst.target === 'REJECT') r.rejectWith = inst.family === 4 ? 'icmp-port-unreachable' : 'icmp6-port-unreachable';
  return r;
}

export const ruleKey = (r: ChainRule): string => JSON.stringify(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1)));
