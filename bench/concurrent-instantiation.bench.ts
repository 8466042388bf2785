// Does libvirt leave a protected interface open while it instantiates filters for ANOTHER interface
// of the same host? The packet lab binds a drop-everything policy to vm1 and probes it from a peer
// continuously (every probe should be dropped), while a second tap device is churned in one of three
// ways. Prints, per way, how many probes got through. Figures, not a pass/fail test: found while
// running the packet suite next to the libvirt suite (run `hack/netlab.sh up` first; root).
//
//   npx tsx bench/concurrent-instantiation.bench.ts                    # libvirt alone
//   NWF_BENCH_GUARD=1 npx tsx bench/concurrent-instantiation.bench.ts  # with a guard rule of ours
import { execFileSync, spawnSync } from 'node:child_process';
import { compilePolicy, filterUuid, renderFilterXml } from '../src/policy/index.js';
import { parseManifests } from '../src/api/index.js';
import { readManifestFiles } from '../src/cli/files.js';
import { department, vm } from '../test/helpers/builders.js';
import { PolicyOnLab } from '../test/packet/policy-on-lab.js';
import { LibvirtClient } from '../src/libvirt/index.js';

const TAP = 'nwfbenchtap0';
const ROUNDS = Number(process.env.NWF_BENCH_ROUNDS ?? 15);
const PROBES = Number(process.env.NWF_BENCH_PROBES ?? 600);

function guard(ipt: string, op: '-A' | '-D', port: string): void {
  spawnSync(ipt, ['-w', op, 'FORWARD', '-m', 'physdev', '--physdev-is-bridged', '--physdev-out', port, '-j', 'DROP']);
  spawnSync(ipt, ['-w', op, 'FORWARD', '-m', 'physdev', '--physdev-in', port, '-j', 'DROP']);
}

async function main(): Promise<void> {
  const { lab, fx, close } = await PolicyOnLab.open('failopen', 'nwflab-fo-');
  const client = new LibvirtClient({ socketPath: '/var/run/libvirt/libvirt-sock' });
  await client.connect();
  execFileSync('ip', ['tuntap', 'add', 'dev', TAP, 'mode', 'tap']);
  try {
    const vm1 = await lab.addEndpoint('vm1');
    const peer = await lab.addEndpoint('peer');
    await fx.listen(vm1, { tcp: [2000] });
    await fx.apply({ services: [], departments: [department('d')], vms: [vm('v1', { department: 'd', parameters: { ip: [vm1.ipv4] } })] }, { v1: vm1 });
    // NWF_BENCH_GUARD=1: a drop of the protected port's bridged traffic at the END of FORWARD, which
    // libvirt's verdicts never reach (FO accepts or drops; what FI returns, libvirt-in-post accepts):
    // only traffic that skipped libvirt's chains meets it. The candidate fix, measured side by side.
    if (process.env.NWF_BENCH_GUARD === '1') for (const ipt of ['iptables', 'ip6tables']) guard(ipt, '-A', vm1.port);

    // The other interface's filters: a one-rule filter, and the example eng-web-01 tree (~60 rules).
    const small = `<filter name='nwflab-fo-small' chain='root'><uuid>${filterUuid('nwflab-fo-small')}</uuid><rule action='drop' direction='inout' priority='1000'><all/></rule></filter>`;
    await client.defineFilter(small);
    const examples = compilePolicy(parseManifests(readManifestFiles(['examples'])));
    const big = examples.vms.get('eng-web-01');
    if (!big?.ok) throw new Error('example did not compile');
    const rename = (n: string): string => (n === 'clean-traffic' ? n : `nwflab-fo-${n}`);
    const bigFilters = big.treeFilters.map(({ filter }) => ({ ...filter, name: rename(filter.name), uuid: filterUuid(rename(filter.name)), refs: filter.refs.map(rename) }));
    for (const f of bigFilters) await client.defineFilter(renderFilterXml(f));
    const bigRoot = rename(big.filter.filter.name);
    const binding = (filter: string): string =>
      `<filterbinding><owner><name>bench</name><uuid>6f1c3c1e-3b7a-4a5e-9d2a-1b2c3d4e5f99</uuid></owner><portdev name='${TAP}'/><mac address='52:54:00:12:34:99'/><filterref filter='${filter}'><parameter name='IP' value='192.0.2.99'/></filterref></filterbinding>`;

    const quiet = async (): Promise<void> => new Promise((r) => setTimeout(r, 200));
    const ways: Record<string, (i: number) => Promise<void>> = {
      'quiet (no churn)': quiet,
      'bind + unbind a one-rule filter': async () => {
        const b = await client.createBinding(binding('nwflab-fo-small'));
        await client.deleteBinding(b);
      },
      'bind + unbind the eng-web-01 tree': async () => {
        const b = await client.createBinding(binding(bigRoot));
        await client.deleteBinding(b);
      },
      'redefine the bound eng-web-01 tree (libvirt rebuilds that interface)': async (i) => {
        const dept = bigFilters.find((f) => f.level === 'department')!;
        const changed = { ...dept, rules: dept.rules.map((r, j) => (j === 0 ? { ...r, comment: `round ${i}` } : r)) };
        await client.defineFilter(renderFilterXml(changed));
      },
      'quiet again (after the churn)': quiet,
    };
    const rows: string[] = [];
    for (const [way, step] of Object.entries(ways)) {
      const bound = way.startsWith('redefine') ? await client.createBinding(binding(bigRoot)) : undefined;
      let stop = false;
      let rounds = 0;
      const churn = (async () => {
        while (!stop && rounds < ROUNDS) await step(rounds++);
      })();
      const probes = Array.from({ length: PROBES }, () => ({ from: peer, to: vm1, proto: 'tcp' as const, family: 4 as const, port: 2000, timeoutMs: 300 }));
      const started = Date.now();
      const results = await lab.probeAll(probes, { concurrency: 16 });
      stop = true;
      await churn;
      if (bound) await client.deleteBinding(bound);
      const open = results.filter((r) => r.verdict === 'open').length;
      const refused = results.filter((r) => r.verdict === 'refused').length;
      rows.push(`| ${way} | ${rounds} | ${PROBES} | ${open} open, ${refused} refused | ${((Date.now() - started) / 1000).toFixed(1)} s |`);
    }
    process.stdout.write(['', '| churn on another interface | rounds | probes to a closed VM | got through | wall |', '|---|---|---|---|---|', ...rows, ''].join('\n'));
  } finally {
    if (process.env.NWF_BENCH_GUARD === '1') for (const ipt of ['iptables', 'ip6tables']) guard(ipt, '-D', 'nwfl-vm1');
    spawnSync('ip', ['link', 'del', TAP]);
    for (const f of (await client.listFilters()).filter((x) => x.name.startsWith('nwflab-fo-nwf-vm'))) await client.undefineFilter(f).catch(() => undefined);
    for (const f of (await client.listFilters()).filter((x) => x.name.startsWith('nwflab-fo-'))) await client.undefineFilter(f).catch(() => undefined);
    await client.close();
    await close();
  }
}

await main();
