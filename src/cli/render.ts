import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { setEntries, type AddressSet, type CompiledPolicy } from '../policy/index.js';
import { parseArgs } from 'node:util';
import { formatDiagnostic, loadAndCompile } from './load.js';
import { UsageError } from './usage-error.js';


/**
 * <dir>/<filter>.xml, refusing a name that would land anywhere else. Filter names come from names
 * the schema restricts to RFC 1123, so this cannot happen today; the check keeps it that way.
 */
export function outputPath(dir: string, filter: string): string {
  const root = resolve(dir);
  const file = resolve(root, `${filter}.xml`);
  if (!file.startsWith(root + sep) || filter.includes('/') || filter.includes('\\')) throw new UsageError(`filter name "${filter}" would be written outside ${dir}`);
  return file;
}

/** Every kernel set any compiled VM matches (one per name: the same group and ports give the same members). */
function setsOfCompile(compiled: CompiledPolicy): AddressSet[] {
  const byName = new Map<string, AddressSet>();
  for (const v of compiled.vms.values()) if (v.ok) for (const s of v.sets) byName.set(s.name, s);
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** The sets as `ipset restore` reads them: what an agent puts in the kernel for this input. */
function ipsetRestoreText(sets: readonly AddressSet[]): string {
  return sets
    .flatMap((s) => [`create ${s.name} ${s.type} family ${s.family === 4 ? 'inet' : 'inet6'} maxelem 65536`, ...setEntries(s).map((e) => `add ${s.name} ${e}`)])
    .join('\n') + '\n';
}

/** Writes <dir>/<filter>.xml for every filter: exactly the XML the agent defines, and the kernel sets. */
export function runRender(argv: string[], out: NodeJS.WritableStream): number {
  const { values } = parseArgs({
    args: argv,
    options: { file: { type: 'string', short: 'f', multiple: true }, output: { type: 'string', short: 'o' } },
    strict: true,
  });
  if (!values.output) throw new UsageError(`missing -o <dir>\nusage: nwfilter-operator render -f <file|dir>... -o <dir>`);
  const compiled = loadAndCompile(values.file ?? []);
  const errors = compiled.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new UsageError(errors.map(formatDiagnostic).join('\n'));
  const files = [...compiled.filters].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, f]) => [outputPath(values.output!, name), f.xml] as const);
  mkdirSync(values.output, { recursive: true });
  for (const [file, xml] of files) writeFileSync(file, xml);
  const sets = setsOfCompile(compiled);
  if (sets.length > 0) writeFileSync(join(values.output, 'ipsets.txt'), ipsetRestoreText(sets));
  for (const d of compiled.diagnostics) out.write(formatDiagnostic(d) + '\n');
  const vms = [...compiled.vms.values()].filter((v) => v.ok).length;
  out.write(
    `rendered ${compiled.filters.size} filters (1 global, ${[...compiled.departments.values()].filter((d) => d.ok).length} department, ${vms} VM)` +
      `${sets.length > 0 ? ` and ${sets.length} kernel IP sets (ipsets.txt)` : ''} into ${values.output}\n`,
  );
  return 0;
}
