import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AVOIDED_RULES, instantiationTable } from '../../../hack/instantiation-table.js';

describe('docs/priorities.md', () => {
  it('shows the instantiation tables the model produces (regenerate: npx tsx hack/instantiation-table.ts)', () => {
    const doc = readFileSync('docs/priorities.md', 'utf8');
    expect(doc).toContain(instantiationTable());
    expect(doc).toContain(instantiationTable(AVOIDED_RULES));
  });
});
