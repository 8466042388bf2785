// Compile benchmark: 10,000 VMs in 100 departments over 30 services (the size).
// Prints total time, time per filter, and the single-VM recompile latency the agent pays on a change.
// Run: npm run bench:compile   (figures vary on a shared machine: look at the medians)
import { performance } from 'node:perf_hooks';
import { compilePolicy, compileVm, type VmContext } from '../src/policy/index.js';
import { department, service, vm } from '../test/helpers/builders.js';

const SERVICES = Number(process.env.BENCH_SERVICES ?? 30);
const DEPARTMENTS = Number(process.env.BENCH_DEPARTMENTS ?? 100);
const VMS = Number(process.env.BENCH_VMS ?? 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

// A small deterministic PRNG so every run compiles the same input.
let seed = 42;
const rand = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const OV = ['allow', 'deny', 'inherit'] as const;

const services = Array.from({ length: SERVICES }, (_, i) =>
  service(`svc-${i}`, {
    ports: i % 5 === 0 ? [{ protocol: 'tcp', port: 1000 + i }, { protocol: 'udp', port: 1000 + i }] : [{ protocol: 'tcp', port: 1000 + i }],
    use: rand() < 0.5,
    provide: rand() < 0.2,
  }),
);
const departments = Array.from({ length: DEPARTMENTS }, (_, d) =>
  department(`dept-${d}`, {
    services: Array.from({ length: 8 }, (_, k) => ({ name: `svc-${(d + k * 3) % SERVICES}`, use: pick(OV), provide: pick(OV), enforced: k === 0 })),
    rules: [{ action: 'accept', direction: 'in', protocol: 'icmp', source: '10.0.0.0/8' }],
    cleanTraffic: d % 2 === 0,
  }),
);
const vms = Array.from({ length: VMS }, (_, v) =>
  vm(`vm-${v}`, {
    department: `dept-${v % DEPARTMENTS}`,
    services: Array.from({ length: 3 }, (_, k) => ({ name: `svc-${(v + k * 7) % SERVICES}`, use: pick(OV), provide: pick(OV) })),
    rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 8000 + (v % 100) }], source: '10.1.0.0/16' }],
    parameters: { ip: [`10.${(v >> 16) & 255}.${(v >> 8) & 255}.${v & 255}`] },
  }),
);

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const input = { services, departments, vms };

compilePolicy(input); // warm-up (JIT)
const totals: number[] = [];
let filters = 0;
let rules = 0;
for (let r = 0; r < ROUNDS; r++) {
  const t0 = performance.now();
  const compiled = compilePolicy(input);
  totals.push(performance.now() - t0);
  filters = compiled.filters.size;
  rules = [...compiled.filters.values()].reduce((n, f) => n + f.filter.rules.length, 0);
  const failed = [...compiled.vms.values()].filter((v) => !v.ok).length;
  if (failed > 0) throw new Error(`${failed} VMs failed to compile`);
}

// What the agent pays when one VMFilter changes: recompile that VM against the compiled rest.
const full = compilePolicy(input);
const ctx: VmContext = {
  services: new Map(services.map((s) => [s.metadata.name, { name: s.metadata.name, spec: s.spec }])),
  departments: full.departments,
  departmentSpecs: new Map(departments.map((d) => [d.metadata.name, d.spec])),
  global: full.global,
};
const single: number[] = [];
for (let i = 0; i < 2000; i++) {
  const v = vms[i % vms.length]!;
  const t0 = performance.now();
  compileVm(v.metadata.name, v.spec, ctx);
  single.push(performance.now() - t0);
}

const total = median(totals);
const rows: [string, string][] = [
  ['input', `${VMS} VMs, ${DEPARTMENTS} departments, ${SERVICES} services`],
  ['output', `${filters} filters, ${rules} rules`],
  ['full compile (median of ' + ROUNDS + ')', `${total.toFixed(0)} ms`],
  ['per filter', `${((total / filters) * 1000).toFixed(1)} µs`],
  ['one VM recompile (median of 2000)', `${(median(single) * 1000).toFixed(1)} µs`],
  ['target per filter', '< 1 ms (reference system: < 100 ms)'],
  ['ratio to our target', `${(1 / (total / filters)).toFixed(0)}x under 1 ms`],
];
const w = Math.max(...rows.map(([k]) => k.length));
process.stdout.write(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n');
