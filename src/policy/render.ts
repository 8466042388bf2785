import { XMLBuilder } from 'fast-xml-parser';
import type { NwFilter, NwRule } from './model.js';

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  format: true,
  indentBy: '  ',
  suppressEmptyNode: true,
});

/**
 * Attributes of the protocol element. `state` belongs here, on the protocol element, not on <rule>
 * (a bug of the reference system), and protocol `all` is rendered as <all/> like any other.
 */
function protocolAttributes(rule: NwRule): Record<string, string | number> {
  const attrs: Record<string, string | number> = {};
  if (rule.src) {
    attrs['@_srcipaddr'] = rule.src.address;
    attrs['@_srcipmask'] = rule.src.prefix;
  }
  if (rule.dst) {
    attrs['@_dstipaddr'] = rule.dst.address;
    attrs['@_dstipmask'] = rule.dst.prefix;
  }
  if (rule.dstPortStart !== undefined) {
    attrs['@_dstportstart'] = rule.dstPortStart;
    attrs['@_dstportend'] = rule.dstPortEnd ?? rule.dstPortStart;
  }
  if (rule.icmpType !== undefined) attrs['@_type'] = rule.icmpType;
  if (rule.icmpCode !== undefined) attrs['@_code'] = rule.icmpCode;
  if (rule.state) attrs['@_state'] = rule.state.join(',');
  if (rule.set) {
    attrs['@_ipset'] = rule.set.name;
    attrs['@_ipsetflags'] = rule.set.flags;
  }
  attrs['@_comment'] = rule.comment;
  return attrs;
}

export function filterToXmlObject(filter: NwFilter): Record<string, unknown> {
  return {
    filter: {
      '@_name': filter.name,
      '@_chain': 'root',
      uuid: filter.uuid,
      ...(filter.refs.length > 0 ? { filterref: filter.refs.map((f) => ({ '@_filter': f })) } : {}),
      ...(filter.rules.length > 0
        ? {
            rule: filter.rules.map((r) => ({
              '@_action': r.action,
              '@_direction': r.direction,
              '@_priority': r.priority,
              // libvirt reads statematch on <rule>, not on the protocol element.
              ...(r.noStateMatch ? { '@_statematch': 'false' } : {}),
              [r.protocol]: protocolAttributes(r),
            })),
          }
        : {}),
    },
  };
}

/** The XML libvirt receives (virNWFilterDefineXMLFlags with validation). */
export function renderFilterXml(filter: NwFilter): string {
  return builder.build(filterToXmlObject(filter)) as string;
}
