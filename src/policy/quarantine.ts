import { BANDS } from './bands.js';
import type { NwFilter } from './model.js';
import { filterUuid, vmFilterName } from './names.js';
import { renderFilterXml } from './render.js';
import { baseRules, byPriority, defaultRules } from './rules.js';

/**
 * The filter a VM gets while its VMFilter cannot be compiled yet and nothing of ours protects it
 * (a new VM naming a department that does not exist yet, say). It has the VM filter's own name, so
 * the compiled policy replaces it in place, and references nothing: not even the global defaults,
 * which a policy that is not known yet may not want. It keeps what every VM chain keeps (related
 * ICMP errors of allowed connections, IPv6 neighbour discovery) and drops all other IP traffic in
 * both directions.
 */
export function quarantineFilter(vmFilter: string): { filter: NwFilter; xml: string } {
  const name = vmFilterName(vmFilter);
  const at = { level: 'vm' as const, owner: vmFilter };
  const filter: NwFilter = {
    name,
    uuid: filterUuid(name),
    level: 'vm',
    refs: [],
    rules: byPriority([...baseRules({ ...at, priority: BANDS.vmBase }), ...defaultRules('drop', { ...at, priority: BANDS.vmDefault })]),
  };
  return { filter, xml: renderFilterXml(filter) };
}
