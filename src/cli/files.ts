import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';

/** Reads the YAML files named on the command line; directories are read recursively, sorted. */
export function readManifestFiles(paths: readonly string[]): { source: string; text: string }[] {
  const out: { source: string; text: string }[] = [];
  const visit = (path: string): void => {
    if (statSync(path).isDirectory()) {
      for (const entry of readdirSync(path).sort()) {
        const child = join(path, entry);
        if (statSync(child).isDirectory() || ['.yaml', '.yml'].includes(extname(entry))) visit(child);
      }
    } else {
      out.push({ source: path, text: readFileSync(path, 'utf8') });
    }
  };
  for (const p of paths) visit(p);
  return out;
}
