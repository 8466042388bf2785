import { XMLParser } from 'fast-xml-parser';

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', parseAttributeValue: false, isArray: (name) => name === 'rule' || name === 'filterref' || name === 'parameter' });

const RULE_ATTRS = new Set(['action', 'direction', 'priority', 'statematch']);

function maskToPrefix(mask: string): string {
  if (!mask.includes('.')) return String(Number(mask));
  const bits = mask.split('.').map((o) => Number(o).toString(2).padStart(8, '0')).join('');
  return String(bits.indexOf('0') === -1 ? 32 : bits.indexOf('0'));
}

function normalizeValue(key: string, value: unknown): string {
  const text = String(value);
  if (key.endsWith('ipmask')) return maskToPrefix(text);
  if (/^(dstport|srcport)(start|end)$/.test(key) || key === 'priority') return String(Number(text));
  return text;
}

/**
 * A form of an nwfilter's XML that is equal for two documents exactly when libvirt would
 * instantiate the same rules: attribute order, whitespace, number spelling and libvirt's own
 * additions (UUID formatting) do not matter. The agent compares libvirt's current XML with the
 * desired one in this form, so that it only redefines what really changed (and detects drift).
 */
export function canonicalFilter(xml: string): string {
  const doc = parser.parse(xml) as { filter?: Record<string, unknown> };
  const f = doc.filter;
  if (!f) throw new Error('not an nwfilter document');
  const refs = ((f.filterref as Record<string, unknown>[] | undefined) ?? []).map((r) => String(r.filter)).sort();
  const rules = ((f.rule as Record<string, unknown>[] | undefined) ?? []).map((r) => {
    const out: Record<string, unknown> = {};
    for (const a of ['action', 'direction']) out[a] = String(r[a]);
    out.priority = normalizeValue('priority', r.priority ?? '500');
    if (r.statematch !== undefined) out.statematch = String(r.statematch);
    for (const [k, v] of Object.entries(r)) {
      if (RULE_ATTRS.has(k)) continue;
      const attrs = (v && typeof v === 'object' ? v : {}) as Record<string, unknown>;
      out.protocol = k;
      out.attrs = Object.fromEntries(
        Object.entries(attrs)
          .filter(([ak]) => ak !== '#text')
          .map(([ak, av]) => [ak, normalizeValue(ak, av)])
          .sort((x, y) => (x[0]! < y[0]! ? -1 : 1)),
      );
    }
    return out;
  });
  return JSON.stringify({ name: String(f.name), chain: String(f.chain ?? 'root'), refs, rules });
}

export function sameFilter(a: string, b: string): boolean {
  return canonicalFilter(a) === canonicalFilter(b);
}
