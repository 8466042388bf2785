// The IP set manager (src/netfilter/ipset.ts) against the real kernel, inside a network namespace of
// its own (ip sets and iptables rules belong to a network namespace, so nothing of the host is
// touched). Needs root and the ipset tool (hack/libvirt-up.sh installs it).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  IpSetCommandError,
  IpSetError,
  IpSetManager,
  InvalidMemberError,
  netnsRunner,
  normalizeMember,
  normalizeMembers,
  parseSave,
  type CommandRunner,
  type DesiredSet,
} from '../../../src/netfilter/index.js';

const NS = `nwfipset-${randomBytes(4).toString('hex')}`;
const P = 'nwft-';
const inNs = (argv: string[], input?: string): string =>
  execFileSync('ip', ['netns', 'exec', NS, ...argv], { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });

/** A runner in the namespace that counts the processes it starts. */
function countingRunner(): { runner: CommandRunner; calls: string[][] } {
  const inner = netnsRunner(NS);
  const calls: string[][] = [];
  return { calls, runner: (argv, input) => (calls.push([...argv]), inner(argv, input)) };
}

const kernelSets = (): ReturnType<typeof parseSave> => parseSave(inNs(['ipset', 'save']));
const set = (family: 4 | 6, members: string[], type?: DesiredSet['type']): DesiredSet => ({ family, members, ...(type ? { type } : {}) });

describe('member normalisation', () => {
  it('spells every address one way, as the kernel stores it', () => {
    expect(normalizeMember('10.0.0.1', 4)).toEqual(['10.0.0.1/32']);
    expect(normalizeMember('10.1.2.3/16', 4)).toEqual(['10.1.0.0/16']);
    expect(normalizeMember('FD00:0:0::1', 6)).toEqual(['fd00::1/128']);
    expect(normalizeMember('fd00:0000:0000:0000:0000:0000:0000:0001/64', 6)).toEqual(['fd00::/64']);
    expect(normalizeMember('2001:db8:0:0:1:0:0:1', 6)).toEqual(['2001:db8::1:0:0:1/128']);
    expect(normalizeMember('::ffff:1.2.3.4', 6)).toEqual(['::ffff:102:304/128']);
    expect(normalizeMember('0.0.0.0/0', 4)).toEqual(['0.0.0.0/1', '128.0.0.0/1']);
    expect(normalizeMember('10.0.0.0/8,tcp:80-81', 4, 'hash:net,port')).toEqual(['10.0.0.0/8,tcp:80', '10.0.0.0/8,tcp:81']);
    expect(normalizeMembers(['10.0.0.1', '10.0.0.1/32', '10.0.0.0/8'], 4)).toEqual(['10.0.0.0/8', '10.0.0.1/32']);
  });

  it('refuses what ipset would misread or resolve', () => {
    // ipset reads 010.0.0.1 as 8.0.0.1 (octal) and resolves names through DNS.
    for (const [m, f] of [['010.0.0.1', 4], ['10.0.0.300', 4], ['example.com', 4], ['::1', 4], ['10.0.0.1', 6], ['fe80::1%eth0', 6], ['1::2::3', 6]] as const) {
      expect(() => normalizeMember(m, f), m).toThrow(InvalidMemberError);
    }
    expect(() => normalizeMember('10.0.0.0/8,icmp:8', 4, 'hash:net,port')).toThrow(InvalidMemberError);
  });
});

describe('IpSetManager in a network namespace', () => {
  beforeAll(() => {
    if (spawnSync('ipset', ['version']).status !== 0) throw new Error('the ipset tool is missing: hack/libvirt-up.sh installs it (apt-get install ipset)');
    execFileSync('ip', ['netns', 'add', NS]);
    inNs(['ip', 'link', 'set', 'lo', 'up']);
  });
  afterAll(() => {
    // Sets and rules go with the namespace.
    spawnSync('ip', ['netns', 'delete', NS]);
  });

  it('creates IPv4, IPv6 and net,port sets, then an equal sync runs nothing but the list', async () => {
    const { runner, calls } = countingRunner();
    const m = new IpSetManager({ runner });
    const desired = new Map([
      [`${P}a4`, set(4, ['10.0.0.1', '192.168.0.0/16'])],
      [`${P}a6`, set(6, ['FD00:0:0::1', 'fd00:1::/48'])],
      [`${P}p4`, set(4, ['198.18.0.0/24,tcp:22', '198.18.0.11,udp:53'], 'hash:net,port')],
    ]);
    const first = await m.sync(desired, { prefix: P });
    expect(first.created.sort()).toEqual([`${P}a4`, `${P}a6`, `${P}p4`]);
    expect(first.processes).toBe(2); // save + one restore
    const k = kernelSets();
    expect(k.get(`${P}a4`)).toMatchObject({ type: 'hash:net', family: 4, members: ['10.0.0.1/32', '192.168.0.0/16'] });
    expect(k.get(`${P}a6`)).toMatchObject({ type: 'hash:net', family: 6, members: ['fd00:1::/48', 'fd00::1/128'] });
    expect(k.get(`${P}p4`)).toMatchObject({ type: 'hash:net,port', family: 4, members: ['198.18.0.0/24,tcp:22', '198.18.0.11/32,udp:53'] });

    calls.length = 0;
    const again = await m.sync(desired, { prefix: P });
    expect(again.unchanged.sort()).toEqual([`${P}a4`, `${P}a6`, `${P}p4`]);
    expect([...again.created, ...again.updated, ...again.destroyed, ...again.recreated]).toEqual([]);
    expect(calls).toEqual([['ipset', 'save']]);
    expect(again.processes).toBe(1);
  });

  it('replaces members atomically: a rule that references the set never misses a packet during updates', async () => {
    const m = new IpSetManager({ runner: netnsRunner(NS) });
    const name = `${P}live`;
    const desired = (i: number) => new Map([[name, set(4, ['127.0.0.1', ...Array.from({ length: 200 }, (_, j) => `10.${i % 2}.${j}.0/24`)])]]);
    await m.sync(desired(0), { prefix: P });
    // Two counting rules on loopback: every datagram to port 9, and those whose source is in the set.
    inNs(['iptables', '-w', '-A', 'INPUT', '-i', 'lo', '-p', 'udp', '--dport', '9']);
    inNs(['iptables', '-w', '-A', 'INPUT', '-i', 'lo', '-p', 'udp', '--dport', '9', '-m', 'set', '--match-set', name, 'src']);
    // The sender keeps sending until killed; 30 swaps happen meanwhile.
    const sender = spawn('ip', ['netns', 'exec', NS, 'bash', '-c', 'while :; do echo x 2>/dev/null >/dev/udp/127.0.0.1/9; done'], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => sender.once('close', () => resolve()));
    const counters = (): number[] =>
      inNs(['iptables', '-w', '-L', 'INPUT', '-v', '-n', '-x'])
        .split('\n')
        .filter((l) => l.includes('dpt:9'))
        .map((l) => Number(l.trim().split(/\s+/)[0]));
    try {
      for (let i = 1; i <= 30; i++) {
        const r = await m.sync(desired(i), { prefix: P });
        expect(r.updated).toEqual([name]);
      }
    } finally {
      sender.kill('SIGKILL');
      await exited;
    }
    const [all, matched] = counters();
    process.stdout.write(`ipset: 30 swaps while ${all} datagrams passed, ${matched} of them matched the set\n`);
    expect(all).toBeGreaterThan(100);
    expect(matched).toBe(all);
    // Each update destroyed its temporary set.
    expect([...kernelSets().keys()].filter((n) => n.includes('~'))).toEqual([]);
    inNs(['iptables', '-w', '-F', 'INPUT']);
  });

  it('destroys sets that are no longer desired, reports a referenced one instead of failing, and removes it once free', async () => {
    const m = new IpSetManager({ runner: netnsRunner(NS) });
    const keep = new Map([[`${P}keep`, set(4, ['10.9.0.0/16'])]]);
    const first = await m.sync(new Map([...keep, [`${P}gone`, set(4, ['10.8.0.1'])], [`${P}held`, set(6, ['fd00::1'])], [`${P}gone2`, set(4, [])]]), { prefix: P });
    // The earlier test's set is not in this list.
    expect(first.destroyed).toEqual([`${P}live`]);
    inNs(['ip6tables', '-w', '-A', 'INPUT', '-m', 'set', '--match-set', `${P}held`, 'src']);
    // A set outside the prefix is none of ours.
    inNs(['ipset', 'create', 'other-set', 'hash:net']);
    const r = await m.sync(keep, { prefix: P });
    expect(r.inUse).toEqual([`${P}held`]);
    expect(r.destroyed.sort()).toEqual([`${P}gone`, `${P}gone2`]);
    expect(r.unchanged).toEqual([`${P}keep`]);
    expect([...kernelSets().keys()].sort()).toEqual([`${P}held`, `${P}keep`, 'other-set']);

    inNs(['ip6tables', '-w', '-F', 'INPUT']);
    const later = await m.sync(keep, { prefix: P });
    expect(later.destroyed).toEqual([`${P}held`]);
    expect(later.inUse).toEqual([]);
    expect([...kernelSets().keys()].sort()).toEqual([`${P}keep`, 'other-set']);
  });

  it('cleans up the temporary set of a sync that died, and recreates a set of another type', async () => {
    const m = new IpSetManager({ runner: netnsRunner(NS) });
    inNs(['ipset', 'restore'], `create ${P}~dead01 hash:net family inet\ncreate ${P}typed hash:ip family inet\nadd ${P}typed 10.0.0.1\n`);
    const r = await m.sync(new Map([[`${P}keep`, set(4, ['10.9.0.0/16'])], [`${P}typed`, set(4, ['10.0.0.1'])]]), { prefix: P });
    expect(r.destroyed).toEqual([`${P}~dead01`]);
    expect(r.recreated).toEqual([`${P}typed`]);
    expect(kernelSets().get(`${P}typed`)).toMatchObject({ type: 'hash:net', members: ['10.0.0.1/32'] });
  });

  it('reports a referenced set of the wrong type as a conflict and still syncs the others', async () => {
    const m = new IpSetManager({ runner: netnsRunner(NS) });
    inNs(['ipset', 'create', `${P}wrong`, 'hash:ip', 'family', 'inet']);
    inNs(['iptables', '-w', '-A', 'INPUT', '-m', 'set', '--match-set', `${P}wrong`, 'src']);
    const r = await m.sync(new Map([[`${P}wrong`, set(4, ['10.0.0.0/8'])], [`${P}keep`, set(4, ['10.9.0.0/16', '10.10.0.0/16'])]]), { prefix: P });
    expect(r.conflicts.map((c) => c.name)).toEqual([`${P}wrong`]);
    expect(r.conflicts[0]!.reason).toMatch(/in use/);
    expect(r.updated).toEqual([`${P}keep`]);
    expect(r.destroyed).toEqual([`${P}typed`]);
    expect(kernelSets().get(`${P}wrong`)?.type).toBe('hash:ip');
    inNs(['iptables', '-w', '-F', 'INPUT']);
  });

  it('refuses an invalid member or name with the typed error before running anything', async () => {
    const { runner, calls } = countingRunner();
    const m = new IpSetManager({ runner });
    for (const desired of [
      new Map([[`${P}bad`, set(4, ['10.0.0.1', 'example.com'])]]),
      new Map([[`${P}bad`, set(6, ['10.0.0.1'])]]),
      new Map([[`${P}${'x'.repeat(30)}`, set(4, [])]]),
      new Map([['elsewhere', set(4, [])]]),
      new Map([[`${P}sp ace`, set(4, [])]]),
    ]) {
      const err = await m.sync(desired, { prefix: P }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidMemberError);
      expect(err).toBeInstanceOf(IpSetError);
    }
    expect(calls).toEqual([]);
    expect(kernelSets().has(`${P}bad`)).toBe(false);
  });

  it('turns a failing command into IpSetCommandError with its stderr', async () => {
    const m = new IpSetManager({ runner: netnsRunner(`${NS}-missing`) });
    const err = await m.list(P).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IpSetCommandError);
    expect((err as IpSetCommandError).stderr).toMatch(/No such file or directory|Cannot open network namespace/);
    expect((err as Error).message).toContain((err as IpSetCommandError).stderr.trim());
  });
});
