import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import type { InterfaceBinding } from '../policy/index.js';

// preserveOrder keeps every element, attribute and their order, so an interface we send back to
// libvirt differs from the one it gave us only in its <filterref>.
const options = { preserveOrder: true, ignoreAttributes: false, attributeNamePrefix: '@_', parseAttributeValue: false, parseTagValue: false, trimValues: true } as const;
const parser = new XMLParser(options);
const builder = new XMLBuilder({ ...options, format: false, suppressEmptyNode: true });

type Node = Record<string, unknown> & { ':@'?: Record<string, string> };

function tagOf(node: Node): string | undefined {
  return Object.keys(node).find((k) => k !== ':@' && k !== '#text');
}

function children(node: Node): Node[] {
  const tag = tagOf(node);
  return tag ? ((node[tag] as Node[]) ?? []) : [];
}

export interface DomainInterface {
  mac: string | undefined;
  /** The interface's target device (vnetN), when running. */
  device: string | undefined;
  filterref: InterfaceBinding | undefined;
  node: Node;
}

export function domainInterfaces(domainXml: string): DomainInterface[] {
  const doc = parser.parse(domainXml) as Node[];
  const domain = doc.find((n) => tagOf(n) === 'domain');
  const devices = domain ? children(domain).find((n) => tagOf(n) === 'devices') : undefined;
  if (!devices) return [];
  return children(devices)
    .filter((n) => tagOf(n) === 'interface')
    .map((node) => {
      const kids = children(node);
      const mac = kids.find((k) => tagOf(k) === 'mac')?.[':@']?.['@_address'];
      const device = kids.find((k) => tagOf(k) === 'target')?.[':@']?.['@_dev'];
      const ref = kids.find((k) => tagOf(k) === 'filterref');
      const filterref = ref
        ? {
            filter: ref[':@']?.['@_filter'] ?? '',
            parameters: children(ref)
              .filter((p) => tagOf(p) === 'parameter')
              .map((p) => ({ name: p[':@']?.['@_name'] ?? '', value: p[':@']?.['@_value'] ?? '' })),
          }
        : undefined;
      return { mac: mac?.toLowerCase(), device, filterref, node };
    });
}

const key = (b: InterfaceBinding | undefined): string =>
  b ? JSON.stringify([b.filter, [...b.parameters].map((p) => `${p.name}=${p.value}`).sort()]) : '';

export function sameBinding(a: InterfaceBinding | undefined, b: InterfaceBinding | undefined): boolean {
  return key(a) === key(b);
}

/** The interface's XML with its <filterref> replaced by `binding` (or removed when undefined). */
export function interfaceXmlWithBinding(iface: DomainInterface, binding: InterfaceBinding | undefined): string {
  const tag = tagOf(iface.node)!;
  const kids = children(iface.node).filter((k) => tagOf(k) !== 'filterref');
  if (binding) {
    kids.push({
      filterref: binding.parameters.map((p) => ({ parameter: [], ':@': { '@_name': p.name, '@_value': p.value } })),
      ':@': { '@_filter': binding.filter },
    });
  }
  const node: Node = { [tag]: kids, ...(iface.node[':@'] ? { ':@': iface.node[':@'] } : {}) };
  return builder.build([node]) as string;
}
