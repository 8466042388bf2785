import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('nwfilter-operator render', () => {
  it('writes one XML file per filter for the examples', () => {
    const out = mkdtempSync(join(tmpdir(), 'nwf-render-'));
    const r = cli('render', '-f', 'examples', '-o', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/rendered 7 filters \(1 global, 2 department, 4 VM\)/);
    expect(readdirSync(out).sort()).toEqual([
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

  it('rejects a malformed packet', () => {
    const r = cli('explain', '-f', 'examples', '--vm', 'eng-web-01', '--packet', 'in tcp');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('need a port');
  });
});
