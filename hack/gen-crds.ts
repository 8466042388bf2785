// Writes crds/*.yaml from the zod schemas in src/api (the single source of truth), and the chart's
// copies of the CRDs and of the default catalog. `--check` writes nothing and exits 1 when stale.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderChartFiles } from './chart-files.js';
import { renderCrdFiles } from './crd-files.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const files = [...renderCrdFiles().map((f) => ({ path: `crds/${f.fileName}`, text: f.text })), ...renderChartFiles(root)];
let stale = 0;
for (const { path, text } of files) {
  const full = join(root, path);
  const current = existsSync(full) ? readFileSync(full, 'utf8') : '';
  if (current === text) continue;
  stale++;
  if (check) process.stderr.write(`stale: ${path}\n`);
  else {
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, text);
  }
}
if (check && stale > 0) {
  process.stderr.write('generated files are stale: run `npm run gen:crds`\n');
  process.exit(1);
}
process.stdout.write(check ? 'generated files are up to date\n' : `${stale} file(s) written\n`);
