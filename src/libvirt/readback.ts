// Read-back validation of a filter defined without VIR_NWFILTER_DEFINE_VALIDATE (libvirt < 7.7 has
// no virNWFilterDefineXMLFlags). Without the flag libvirt silently drops what it does not understand
// (an unknown attribute, a second protocol element in a rule, a misplaced statematch, an
// out-of-range priority becomes 500), so the client compares what it sent with what libvirt kept.
import { isIPv4, isIPv6 } from 'node:net';
import { XMLParser } from 'fast-xml-parser';

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseAttributeValue: false,
  parseTagValue: false,
  // Every element (not attribute) as an array: a rule with two protocol elements of the same name
  // must not collapse into one key. An element without attributes (<all/>) parses as ''.
  isArray: (_name: string, _path: unknown, _leaf: boolean, isAttribute: boolean) => !isAttribute,
});

type Element = Record<string, unknown>;

/** Attributes libvirt does not print when they have their default value (so absent = this value). */
const DEFAULTS: Record<string, Record<string, string>> = {
  filter: { priority: '0', chain: 'root' },
  rule: { priority: '500', statematch: 'true' },
  protocol: { match: 'yes' },
};

/** Ethertype names libvirt prints for numbers it knows (macProtoMap in src/conf/nwfilter_conf.c). */
const ETHERTYPES: Record<string, number> = { arp: 0x0806, rarp: 0x8035, ipv4: 0x0800, ipv6: 0x86dd, vlan: 0x8100 };

const INTEGER = /^(?:-?\d+|0x[0-9a-f]+)$/i;
const MAC = /^(?:[0-9a-f]{1,2}:){5}[0-9a-f]{1,2}$/i;

/** Bits set in a dotted IPv4 or an IPv6 netmask, as libvirt prints a mask (a prefix length). */
function maskBits(mask: string): string | undefined {
  if (isIPv4(mask)) return String(mask.split('.').reduce((n, o) => n + Number(o).toString(2).replace(/0/g, '').length, 0));
  if (!isIPv6(mask)) return undefined;
  const full = expandIPv6(mask);
  return String(full.split(':').reduce((n, h) => n + parseInt(h, 16).toString(2).replace(/0/g, '').length, 0));
}

function expandIPv6(address: string): string {
  const [head = '', tail = ''] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = address.includes('::') && tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.map((g) => g.toLowerCase().padStart(4, '0')).join(':');
}

/**
 * The value as libvirt would print it: libvirt re-serializes numbers (a hex priority is parsed,
 * ports keep their spelling), masks (as prefix lengths), addresses (lower case, IPv6 compressed),
 * state and TCP flag lists (upper case, its own order) and booleans (statematch='0' -> 'false').
 */
export function normalizeValue(key: string, raw: string): string {
  const v = raw.trim();
  if (v.startsWith('$')) return v; // a variable: libvirt keeps its name
  if (key === 'statematch') return /^(?:0|false)$/i.test(v) ? 'false' : 'true';
  if (key === 'match') return /^(?:no|0|false)$/i.test(v) ? 'no' : 'yes';
  if (key === 'state' || key === 'ipsetflags') return v.toUpperCase().split(',').map((s) => s.trim()).sort().join(',');
  if (key === 'flags') return v.toUpperCase().split('/').map((part) => part.split(',').map((s) => s.trim()).sort().join(',')).join('/');
  if ((key === 'protocolid' || key === 'encap-protocol') && ETHERTYPES[v.toLowerCase()] !== undefined) return String(ETHERTYPES[v.toLowerCase()]);
  if (/ipmask$/.test(key)) return maskBits(v) ?? (INTEGER.test(v) ? String(Number(v)) : v);
  if (INTEGER.test(v)) return String(Number(v));
  if (isIPv6(v)) return expandIPv6(v);
  if (MAC.test(v)) return v.toLowerCase().split(':').map((o) => o.padStart(2, '0')).join(':');
  return v;
}

function attributes(e: Element): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(e)) if (typeof v === 'string' && k !== '#text') out[k] = v;
  return out;
}

/** Child elements of that name; one without attributes (parsed as '') becomes {}. */
function children(e: Element, name: string): Element[] {
  const v = e[name];
  return Array.isArray(v) ? v.map((x) => (x && typeof x === 'object' ? (x as Element) : {})) : [];
}

/** The child elements of a rule (its protocol elements) with their names; attributes are strings, elements arrays. */
function protocolElements(rule: Element): { name: string; attrs: Record<string, string> }[] {
  return Object.keys(rule)
    .filter((k) => Array.isArray(rule[k]))
    .flatMap((k) => children(rule, k).map((e) => ({ name: k, attrs: attributes(e) })));
}

/**
 * Each attribute of `sent` must be in `kept` with an equivalent value (or be absent there and equal
 * libvirt's default). Attributes libvirt added (a rule's default priority, a chain's priority) are
 * not differences: only what we asked for is checked.
 */
function compareAttributes(where: string, sent: Record<string, string>, kept: Record<string, string>, defaults: Record<string, string>, out: string[]): void {
  for (const [k, value] of Object.entries(sent)) {
    const have = kept[k] ?? defaults[k];
    if (have !== undefined && normalizeValue(k, value) === normalizeValue(k, have)) continue;
    if (kept[k] !== undefined) out.push(`${where}: ${k}='${value}' became ${k}='${kept[k]}'`);
    else out.push(`${where}: attribute ${k}='${value}' was dropped${have === undefined ? '' : ` (libvirt's default ${k}='${have}' applies)`}`);
  }
}

function rootFilter(xml: string, what: string): Element {
  const doc = parser.parse(xml) as Record<string, unknown>;
  const f = (doc.filter as Element[] | undefined)?.[0];
  if (!f) throw new Error(`${what} is not an nwfilter document`);
  return f;
}

/**
 * What libvirt did not keep of the filter we sent, as sentences ("rule 2 <tcp>: attribute
 * bogus='1' was dropped"); empty when libvirt kept everything. Compares parsed structures, not
 * text, because libvirt re-serializes: attribute order and quoting, defaults it adds, the spelling
 * of numbers, masks, addresses and lists (see normalizeValue). Checks the filter's name, chain and
 * priority, its filter references (in order, with their parameters), and its rules: their number,
 * and for each (in order) action, direction, priority, statematch and every protocol element with
 * every attribute sent. The `<uuid>` is not compared: the define's answer is authoritative.
 */
export function filterDifferences(sentXml: string, keptXml: string): string[] {
  const sent = rootFilter(sentXml, 'the XML sent');
  const kept = rootFilter(keptXml, "libvirt's XML");
  const out: string[] = [];
  compareAttributes('filter', attributes(sent), attributes(kept), DEFAULTS.filter!, out);

  // Elements libvirt does not know (a misspelt <rule>) are ignored by its parser: a rule lost.
  for (const k of Object.keys(sent).filter((k) => Array.isArray(sent[k]) && !['uuid', 'rule', 'filterref'].includes(k))) {
    const [n, m] = [children(sent, k).length, children(kept, k).length];
    if (n !== m) out.push(m === 0 ? `element <${k}> was dropped${n > 1 ? ` (${n} of them)` : ''}` : `${n} <${k}> elements sent, ${m} kept`);
  }

  const sentRefs = children(sent, 'filterref');
  const keptRefs = children(kept, 'filterref');
  if (sentRefs.length !== keptRefs.length) out.push(`${sentRefs.length} filter references sent, ${keptRefs.length} kept`);
  sentRefs.forEach((ref, i) => {
    const other = keptRefs[i];
    if (!other) return;
    const where = `filterref ${i + 1} (${String(ref.filter)})`;
    compareAttributes(where, attributes(ref), attributes(other), {}, out);
    const params = (e: Element) => children(e, 'parameter').map((p) => `${String(p.name)}=${String(p.value)}`);
    const [a, b] = [params(ref), params(other)];
    if (a.join('\n') !== b.join('\n')) out.push(`${where}: parameters ${a.join(', ') || '(none)'} became ${b.join(', ') || '(none)'}`);
  });

  const sentRules = children(sent, 'rule');
  const keptRules = children(kept, 'rule');
  if (sentRules.length !== keptRules.length) out.push(`${sentRules.length} rules sent, ${keptRules.length} kept`);
  sentRules.forEach((rule, i) => {
    const other = keptRules[i];
    if (!other) return;
    const where = `rule ${i + 1}`;
    compareAttributes(where, attributes(rule), attributes(other), DEFAULTS.rule!, out);
    const sentProtocols = protocolElements(rule);
    const keptProtocols = protocolElements(other);
    for (const p of sentProtocols) {
      const match = keptProtocols.findIndex((k) => k.name === p.name);
      if (match === -1) {
        out.push(`${where}: protocol element <${p.name}> was dropped`);
        continue;
      }
      compareAttributes(`${where} <${p.name}>`, p.attrs, keptProtocols[match]!.attrs, DEFAULTS.protocol!, out);
      keptProtocols.splice(match, 1);
    }
    for (const extra of keptProtocols) out.push(`${where}: libvirt has a protocol element <${extra.name}> that was not sent`);
  });
  return out;
}
