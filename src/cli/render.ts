import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatDiagnostic, loadAndCompile } from './load.js';
import { UsageError } from './usage-error.js';


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
  mkdirSync(values.output, { recursive: true });
  for (const [name, f] of [...compiled.filters].sort(([a], [b]) => (a < b ? -1 : 1))) {
    writeFileSync(join(values.output, `${name}.xml`), f.xml);
  }
  for (const d of compiled.diagnostics) out.write(formatDiagnostic(d) + '\n');
  const vms = [...compiled.vms.values()].filter((v) => v.ok).length;
  out.write(
    `rendered ${compiled.filters.size} filters (1 global, ${[...compiled.departments.values()].filter((d) => d.ok).length} department, ${vms} VM) into ${values.output}\n`,
  );
  return 0;
}
