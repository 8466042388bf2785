import { describe, expect, it } from 'vitest';
import { canonicalFilter, compilePolicy, sameFilter } from '../../../src/policy/index.js';
import { service, vm } from '../../helpers/builders.js';

const ours = `<filter name="nwf-x" chain="root"><uuid>u</uuid><filterref filter="nwf-global"/>
<rule action="accept" direction="in" priority="-580"><tcp dstportstart="22" dstportend="22" srcipaddr="10.0.0.0" srcipmask="8" comment="c"/></rule></filter>`;

describe('canonical filter form', () => {
  it('ignores quoting, attribute order, whitespace, UUID, number and mask spelling', () => {
    const libvirts = `<filter name='nwf-x' chain='root'>
  <uuid>6f1c3c1e-3b7a-4a5e-9d2a-1b2c3d4e5f60</uuid>
  <filterref filter='nwf-global'/>
  <rule action='accept' direction='in' priority='-580'>
    <tcp comment='c' srcipmask='255.0.0.0' srcipaddr='10.0.0.0' dstportend='0022' dstportstart='22'/>
  </rule>
</filter>`;
    expect(sameFilter(ours, libvirts)).toBe(true);
  });

  it('sees every change libvirt would instantiate differently', () => {
    for (const changed of [
      ours.replace('accept', 'drop'),
      ours.replace('direction="in"', 'direction="out"'),
      ours.replace('-580', '-590'),
      ours.replace('<tcp', '<udp').replace('/></rule>', '/></rule>'),
      ours.replace('dstportend="22"', 'dstportend="23"'),
      ours.replace('srcipmask="8"', 'srcipmask="16"'),
      ours.replace('nwf-global', 'nwf-dept-a'),
      ours.replace('comment="c"', 'comment="d"'),
      ours.replace('</filter>', '<rule action="drop" direction="inout" priority="1000"><all/></rule></filter>'),
    ]) {
      expect(sameFilter(ours, changed), changed).toBe(false);
    }
  });

  it('is stable for everything the compiler renders', () => {
    const compiled = compilePolicy({
      services: [service('ssh', { ports: [{ protocol: 'tcp', port: 22 }], use: true })],
      departments: [],
      vms: [vm('v', { rules: [{ action: 'drop', direction: 'in', protocol: 'all', source: '192.168.0.0/16' }] })],
    });
    for (const f of compiled.filters.values()) expect(canonicalFilter(f.xml)).toBe(canonicalFilter(f.xml.replace(/"/g, "'")));
  });
});
