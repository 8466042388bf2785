import { describe, expect, it } from 'vitest';
import { isOwnedFilter, ownedFilterUuid } from '../../../src/agent/ownership.js';
import { filterUuid, quarantineFilter } from '../../../src/policy/index.js';

describe('filter ownership', () => {
  it('is ours only with our prefix and the UUID derived from the name', () => {
    expect(isOwnedFilter({ name: 'nwf-vm-a', uuid: filterUuid('nwf-vm-a') })).toBe(true);
    expect(isOwnedFilter({ name: 'nwf-vm-a', uuid: filterUuid('nwf-vm-a').toUpperCase() })).toBe(true);
    expect(isOwnedFilter({ name: 'nwf-vm-a', uuid: filterUuid('nwf-vm-b') })).toBe(false);
    expect(isOwnedFilter({ name: 'clean-traffic', uuid: filterUuid('clean-traffic') })).toBe(false);
  });

  it('reads the UUID from the XML as we render it and as libvirt dumps it', () => {
    const ours = quarantineFilter('a').xml;
    expect(ownedFilterUuid('nwf-vm-a', ours)).toBe(true);
    const dumped = `<filter name='nwf-vm-a' chain='root'>\n  <uuid>${filterUuid('nwf-vm-a')}</uuid>\n  <rule action='drop' direction='inout' priority='1000'><all/></rule>\n</filter>`;
    expect(ownedFilterUuid('nwf-vm-a', dumped)).toBe(true);
    const users = dumped.replace(filterUuid('nwf-vm-a'), '6b1f1a8e-8f8e-4c4b-9a0e-1d2c3b4a5f60');
    expect(ownedFilterUuid('nwf-vm-a', users)).toBe(false);
    expect(ownedFilterUuid('nwf-vm-a', "<filter name='nwf-vm-a'/>")).toBe(false);
  });
});
