import { XMLParser } from 'fast-xml-parser';

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', isArray: (n) => n === 'filterref' });

/** Names of the filters an nwfilter XML references. */
export function filterRefsOf(xml: string): string[] {
  const doc = parser.parse(xml) as { filter?: { filterref?: { filter?: string }[] } };
  return (doc.filter?.filterref ?? []).map((r) => String(r.filter ?? '')).filter(Boolean);
}
