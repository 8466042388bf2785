import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { outputPath } from '../../../src/cli/render.js';
import { AgentConfig, ControllerConfig } from '../../../src/runtime/config.js';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('nwfilter-operator help and version', () => {
  it.each([
    ['controller', ControllerConfig],
    ['agent', AgentConfig],
  ] as const)('%s --help exits 0 and documents every flag with its environment variable', (command, schema) => {
    const r = cli(command, '--help');
    expect(r.code).toBe(0);
    for (const key of Object.keys(schema.shape)) {
      const flag = '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
      expect(r.stdout, flag).toMatch(new RegExp(`^  ${flag}\\s+\\S.*env NWF_`, 'm'));
    }
  });

  it('render and explain have --help too; --version prints the package version', () => {
    for (const command of ['render', 'explain']) {
      const r = cli(command, '-h');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`usage: nwfilter-operator ${command}`);
      expect(r.stdout).toContain('--file');
    }
    const v = cli('--version');
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(`nwfilter-operator ${JSON.parse(readFileSync('package.json', 'utf8')).version}`);
  });

  it('an unknown option names it once and points to --help', () => {
    const r = cli('controller', '--bogus');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: Unknown option '--bogus'/);
    expect(r.stderr).not.toMatch(/error:.*error:/);
    expect(r.stderr).toContain('--help');
  });

  it('render refuses a filter name that would be written outside -o', () => {
    expect(outputPath('/tmp/out', 'nwf-vm-a')).toBe('/tmp/out/nwf-vm-a.xml');
    expect(() => outputPath('/tmp/out', '../escape')).toThrow(/outside/);
    expect(() => outputPath('/tmp/out', 'a/b')).toThrow(/outside/);
  });
});

describe('nwfilter-operator render', () => {
  it('writes one XML file per filter for the examples', () => {
    const out = mkdtempSync(join(tmpdir(), 'nwf-render-'));
    const r = cli('render', '-f', 'examples', '-o', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/rendered 7 filters \(1 global, 2 department, 4 VM\)/);
    expect(readdirSync(out).sort()).toEqual([
      'ipsets.txt',
      'nwf-dept-engineering.xml',
      'nwf-dept-finance.xml',
      'nwf-global.xml',
      'nwf-vm-eng-db-01.xml',
      'nwf-vm-eng-web-01.xml',
      'nwf-vm-fin-desk-01.xml',
      'nwf-vm-lab-standalone.xml',
    ]);
    const vm = readFileSync(join(out, 'nwf-vm-eng-web-01.xml'), 'utf8');
    expect(vm).toContain('<filterref filter="nwf-dept-engineering"/>');
    expect(vm).toMatch(/<uuid>[0-9a-f-]{36}<\/uuid>/);
    // The kernel sets an agent keeps for these policies: the office group with the ssh port, and the
    // peers of engineering (both example engineering VMs) with the metrics port.
    const sets = readFileSync(join(out, 'ipsets.txt'), 'utf8');
    expect(r.stdout).toContain('and 6 kernel IP sets (ipsets.txt)');
    expect(sets).toMatch(/^create nwf:4-office-netwo-[0-9a-f]{12} hash:net,port family inet maxelem 65536$/m);
    expect(sets).toMatch(/^add nwf:4-office-netwo-[0-9a-f]{12} 10\.20\.0\.0\/16,tcp:22$/m);
    expect(sets).toMatch(/^add nwf:6-office-netwo-[0-9a-f]{12} fd00:20::\/48,tcp:22$/m);
    expect(sets).toMatch(/^add nwf:4-peers-[0-9a-f-]+ 10\.10\.0\.21\/32,tcp:9100$/m);
    expect(readFileSync(join(out, 'nwf-dept-engineering.xml'), 'utf8')).toMatch(/<all ipset="nwf:4-office-netwo-[0-9a-f]{12}" ipsetflags="src,dst"/);
  });

  it('exits 2 with a message naming the resource and the field on invalid input', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nwf-bad-'));
    writeFileSync(
      join(dir, 'bad.yaml'),
      'apiVersion: nwfilter.infinibay.io/v1alpha1\nkind: ServicePolicy\nmetadata: {name: web}\nspec:\n  ports: [{protocol: tcp, port: 90, endPort: 80}]\n',
    );
    const r = cli('render', '-f', dir, '-o', join(dir, 'out'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ServicePolicy/web spec.ports[0].endPort: endPort must be greater than or equal to port');
  });

  it('refuses a comment with a character XML 1.0 forbids instead of printing XML libvirt would reject', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nwf-xmlchar-'));
    writeFileSync(
      join(dir, 'vm.yaml'),
      'apiVersion: nwfilter.infinibay.io/v1alpha1\nkind: VMFilter\nmetadata: {name: v}\nspec:\n  domain: {name: v}\n' +
        '  rules: [{action: accept, direction: in, protocol: tcp, ports: [{port: 22}], comment: "ok \\uFFFF"}]\n',
    );
    const r = cli('render', '-f', dir, '-o', join(dir, 'out'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/comment/);
    expect(r.stderr).toMatch(/XML 1\.0/);
    expect(() => readdirSync(join(dir, 'out'))).toThrow();
  });

  it('exits 2 when a reference does not resolve', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nwf-ref-'));
    writeFileSync(join(dir, 'vm.yaml'), 'apiVersion: nwfilter.infinibay.io/v1alpha1\nkind: VMFilter\nmetadata: {name: v}\nspec: {domain: {name: v}, department: nope}\n');
    const r = cli('render', '-f', dir, '-o', join(dir, 'out'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('VMFilter/v spec.department: DepartmentNotFound');
  });

  it('exits 2 on a missing file and on unknown flags', () => {
    expect(cli('render', '-f', 'nope.yaml', '-o', '/tmp/x').code).toBe(2);
    expect(cli('render', '--bogus').code).toBe(2);
    expect(cli('frobnicate').code).toBe(2);
  });
});

describe('nwfilter-operator explain', () => {
  it('names the decision, the rule and the level', () => {
    const r = cli('explain', '-f', 'examples', '--vm', 'eng-web-01', '--packet', 'out tcp 22');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('decision: DROP');
    expect(r.stdout).toContain('level:    vm, service ssh use deny');
    expect(r.stdout).toContain('priority -590 in filter nwf-vm-eng-web-01');
  });

  it('shows an enforced department setting winning over the VM', () => {
    const r = cli('explain', '-f', 'examples', '--vm', 'eng-web-01', '--packet', 'out tcp 25');
    expect(r.stdout).toContain('decision: DROP');
    expect(r.stdout).toContain('level:    department (enforced), service smtp use deny');
  });

  it('uses source addresses', () => {
    const fromVpn = cli('explain', '-f', 'examples', '--vm', 'fin-desk-01', '--packet', 'in tcp 3389 from 10.8.1.2');
    expect(fromVpn.stdout).toContain('decision: ACCEPT');
    expect(fromVpn.stdout).toContain('custom rule 0 of finance');
    const fromElsewhere = cli('explain', '-f', 'examples', '--vm', 'fin-desk-01', '--packet', 'in tcp 3389 from 192.0.2.1');
    expect(fromElsewhere.stdout).toContain('decision: DROP');
    expect(fromElsewhere.stdout).toContain('service rdp provide deny');
  });

  it('falls to the fail-closed default', () => {
    const r = cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'in tcp 8080');
    expect(r.stdout).toContain('decision: DROP');
    expect(r.stdout).toContain('level:    vm, default');
  });

  it('follows the connection through libvirt\'s chains: first packet, reply, next packet', () => {
    const r = cli('explain', '-f', 'examples', '--vm', 'eng-web-01', '--packet', 'in tcp 443 from 10.1.2.3');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('outcome:  open');
    expect(r.stdout).toMatch(/first packet \(NEW\) in FO-PORT .*: ACCEPT\n\s+by -A FO-PORT -p tcp -m tcp --dport 443 -m conntrack --ctstate NEW,ESTABLISHED --ctdir ORIGINAL -j ACCEPT/);
    expect(r.stdout).toMatch(/reply \(ESTABLISHED, reply direction\) in FI-PORT .*: ACCEPT\n\s+by -A FI-PORT -p tcp -m tcp --sport 443 .*--ctdir REPLY -j RETURN\n\s+from the reply side of vm, service https provide allow/);
  });

  it('explains a closed port, the host, IPv6 and JSON', () => {
    const closed = cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'out udp 53 to 10.0.0.53', '--closed');
    expect(closed.stdout).toContain('outcome:  refused');
    expect(closed.stdout).toContain('ICMP port unreachable from the closed port (RELATED)');
    expect(closed.stdout).toContain('base rule (related)');
    const host = cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'in tcp 22 host');
    expect(host.stdout).toContain('sent by the host itself, no libvirt chain sees it');
    expect(host.stdout).toContain('in HI-PORT');
    // A service applies to both families: ssh is provided over IPv6 too; what nothing allows drops.
    const v6 = cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'in tcp 80 from fd00::5', '--json');
    const parsed = JSON.parse(v6.stdout) as { decision: string; outcome: string; packets: { chain: string; instance: string }[] };
    expect(parsed).toMatchObject({ decision: 'drop', outcome: 'dropped' });
    expect(parsed.packets[0]).toMatchObject({ chain: 'FO', instance: '-A FO-PORT -p all -j DROP' });
    const ssh6 = JSON.parse(cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'in tcp 22 from fd00::5', '--json').stdout) as typeof parsed;
    expect(ssh6).toMatchObject({ decision: 'accept', outcome: 'open' });
    expect(ssh6.packets[0]).toMatchObject({ chain: 'FO', instance: '-A FO-PORT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW,ESTABLISHED --ctdir ORIGINAL -j ACCEPT' });
    const finance = cli('explain', '-f', 'examples', '--vm', 'fin-desk-01', '--packet', 'in tcp 8080 from 192.0.2.1');
    expect(finance.stdout).toContain('outcome:  refused');
    expect(finance.stdout).toContain('REJECT is sent by the host');
  });

  it('explains address groups, peers and ICMP types with the members and conntrack states the kernel sees', () => {
    const office = cli('explain', '-f', 'examples', '--vm', 'eng-db-01', '--packet', 'in tcp 22 from 10.30.4.5');
    expect(office.stdout).toContain('decision: ACCEPT');
    expect(office.stdout).toMatch(/with set nwf:4-office-netwo-[0-9a-f]{12} \(src,dst: AddressGroup office-networks x tcp:22\)/);
    // eng-web-01 is a peer of eng-db-01 by label (role: web): PostgreSQL from its IPv6 address opens, from another does not.
    const peer = JSON.parse(cli('explain', '-f', 'examples', '--vm', 'eng-db-01', '--packet', 'in tcp 5432 from fd00:10::11', '--json').stdout) as { decision: string };
    expect(peer.decision).toBe('accept');
    const stranger = JSON.parse(cli('explain', '-f', 'examples', '--vm', 'eng-db-01', '--packet', 'in tcp 5432 from fd00:10::99', '--json').stdout) as { decision: string };
    expect(stranger.decision).toBe('drop');
    const timestamp = cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'in icmp timestamp-request from 10.1.1.1');
    expect(timestamp.stdout).toContain('decision: DROP');
    expect(timestamp.stdout).toContain('ICMPv4 type 13 code 0, on its own: conntrack calls it NEW');
    const ra = JSON.parse(cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'in icmp router-advertisement ipv6', '--json').stdout) as { decision: string; ctstate: string };
    expect(ra).toMatchObject({ decision: 'drop', ctstate: 'UNTRACKED' });
    const ns = JSON.parse(cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'in icmp neighbor-solicitation ipv6', '--json').stdout) as { decision: string; rule: { origin: { what: string } } };
    expect(ns).toMatchObject({ decision: 'accept', rule: { origin: { what: 'neighbor-discovery' } } });
    const echo = cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'out icmp echo-request to fd00::1');
    expect(echo.stdout).toContain('outcome:  open');
    expect(cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'in icmp code 3').stderr).toContain('an ICMP code needs a type');
    expect(cli('explain', '-f', 'examples', '--vm', 'lab-standalone', '--packet', 'in icmp neighbor-solicitation').stderr).toContain('does not exist in IPv4');
  });

  it('rejects a malformed packet', () => {
    const r = cli('explain', '-f', 'examples', '--vm', 'eng-web-01', '--packet', 'in tcp');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('need a port');
  });
});
