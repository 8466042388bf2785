import { describe, expect, it } from 'vitest';
import { domainInterfaces, interfaceXmlWithBinding, sameBinding } from '../../../src/agent/interfaces.js';

const domain = `<domain type='qemu'><name>x</name><devices>
<interface type='ethernet'><mac address='52:54:00:AA:bb:cc'/><target dev='vnet0' managed='no'/><model type='virtio'/>
<filterref filter='old'><parameter name='IP' value='1.2.3.4'/></filterref><alias name='net0'/></interface>
<interface type='network'><mac address='52:54:00:00:00:02'/><source network='default'/></interface>
<disk type='file'/></devices></domain>`;

describe('domain interfaces', () => {
  it('lists interfaces with MAC (lowercased), device and current filterref', () => {
    const ifs = domainInterfaces(domain);
    expect(ifs.map((i) => [i.mac, i.device, i.filterref])).toEqual([
      ['52:54:00:aa:bb:cc', 'vnet0', { filter: 'old', parameters: [{ name: 'IP', value: '1.2.3.4' }] }],
      ['52:54:00:00:00:02', undefined, undefined],
    ]);
  });

  it('replaces only the filterref, keeping every other element and attribute', () => {
    const [first] = domainInterfaces(domain);
    const xml = interfaceXmlWithBinding(first!, { filter: 'nwf-vm-x', parameters: [{ name: 'IP', value: '10.0.0.1' }] });
    expect(xml).toBe(
      '<interface type="ethernet"><mac address="52:54:00:AA:bb:cc"/><target dev="vnet0" managed="no"/><model type="virtio"/><alias name="net0"/>' +
        '<filterref filter="nwf-vm-x"><parameter name="IP" value="10.0.0.1"/></filterref></interface>',
    );
    const [reparsed] = domainInterfaces(`<domain><devices>${xml}</devices></domain>`);
    expect(reparsed!.filterref).toEqual({ filter: 'nwf-vm-x', parameters: [{ name: 'IP', value: '10.0.0.1' }] });
  });

  it('removes the filterref when no binding is given', () => {
    const [first] = domainInterfaces(domain);
    expect(interfaceXmlWithBinding(first!, undefined)).not.toContain('filterref');
  });

  it('compares bindings regardless of parameter order', () => {
    const a = { filter: 'f', parameters: [{ name: 'IP', value: '1' }, { name: 'IP', value: '2' }] };
    const b = { filter: 'f', parameters: [{ name: 'IP', value: '2' }, { name: 'IP', value: '1' }] };
    expect(sameBinding(a, b)).toBe(true);
    expect(sameBinding(a, { ...b, filter: 'g' })).toBe(false);
    expect(sameBinding(undefined, undefined)).toBe(true);
    expect(sameBinding(a, undefined)).toBe(false);
  });
});
