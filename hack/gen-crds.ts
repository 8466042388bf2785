// Writes crds/*.yaml from the zod schemas in src/api (the single source of truth).
// `--check` writes nothing and exits 1 when crds/ differs from what would be generated.
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderCrdFiles } from './crd-files.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const dir = join(root, 'crds');
mkdirSync(dir, { recursive: true });
let stale = 0;
for (const { fileName, text } of renderCrdFiles()) {
  const path = join(dir, fileName);
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '';
  if (current === text) continue;
  stale++;
  if (check) process.stderr.write(`stale: crds/${fileName}\n`);
  else writeFileSync(path, text);
}
if (check && stale > 0) {
  process.stderr.write('crds/ is stale: run `npm run gen:crds`\n');
  process.exit(1);
}
process.stdout.write(check ? 'crds/ is up to date\n' : `crds/: ${stale} file(s) written\n`);
