import { formatManifestError, parseManifests } from '../api/index.js';
import { compilePolicy, type CompiledPolicy, type Diagnostic } from '../policy/index.js';
import { readManifestFiles } from './files.js';
import { UsageError } from './usage-error.js';

export function formatDiagnostic(d: Diagnostic): string {
  return `${d.severity}: ${d.resource.kind}/${d.resource.name}${d.field ? ` ${d.field}` : ''}: ${d.reason}: ${d.message}`;
}

/** Reads, validates and compiles manifests; invalid input is a UsageError naming resource and field. */
export function loadAndCompile(paths: readonly string[]): CompiledPolicy {
  if (paths.length === 0) throw new UsageError('no input: give -f <file|dir>');
  const parsed = parseManifests(readManifestFiles(paths));
  if (parsed.errors.length > 0) throw new UsageError(parsed.errors.map(formatManifestError).join('\n'));
  return compilePolicy(parsed);
}
