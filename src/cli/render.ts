import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve, sep } from 'node:path';
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

/** Writes <dir>/<filter>.xml for every filter: exactly the XML the agent defines. */
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
  for (const d of compiled.diagnostics) out.write(formatDiagnostic(d) + '\n');
  const vms = [...compiled.vms.values()].filter((v) => v.ok).length;
  out.write(
    `rendered ${compiled.filters.size} filters (1 global, ${[...compiled.departments.values()].filter((d) => d.ok).length} department, ${vms} VM) into ${values.output}\n`,
  );
  return 0;
}
