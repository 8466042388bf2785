import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isXmlText } from '../../../src/api/index.js';
import { MAX_LIBVIRT_COMMENT, clampComment, compileVm, compileGlobal, renderFilterXml, validateFilter, type VmContext } from '../../../src/policy/index.js';
import { vm } from '../../helpers/builders.js';

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

describe('clampComment: what libvirt keeps (256 bytes of UTF-8)', () => {
  it('keeps ASCII up to the limit and cuts one byte more with an ellipsis', () => {
    expect(clampComment('a'.repeat(256))).toBe('a'.repeat(256));
    const cut = clampComment('a'.repeat(257));
    expect(bytes(cut)).toBe(256);
    expect(cut).toBe('a'.repeat(253) + '…');
  });

  it.each([
    ['2-byte', 'é'],
    ['3-byte', '日'],
    ['4-byte (a surrogate pair in UTF-16)', '😀'],
  ])('never splits a %s character that straddles the limit', (_what, ch) => {
    for (let pad = 0; pad < 4; pad++) {
      const text = 'a'.repeat(pad) + ch.repeat(200);
      const out = clampComment(text);
      expect(bytes(out)).toBeLessThanOrEqual(MAX_LIBVIRT_COMMENT);
      expect(out.endsWith('…')).toBe(true);
      expect(text.startsWith(out.slice(0, -1))).toBe(true);
      expect(out).not.toMatch(/[\uD800-\uDFFF](?![\uDC00-\uDFFF])/u);
      // Nothing more would have fit.
      expect(bytes(out) + bytes(ch)).toBeGreaterThan(MAX_LIBVIRT_COMMENT);
    }
  });

  it('counts the leading space of a $-comment in the budget', () => {
    expect(clampComment('$x')).toBe(' $x');
    const out = clampComment('$' + 'b'.repeat(300));
    expect(out.startsWith(' $')).toBe(true);
    expect(bytes(out)).toBe(256);
  });

  it('property: at most 256 bytes, a code-point prefix of the text (plus the ellipsis), unchanged when it fits', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (text) => {
        const safe = text.startsWith('$') ? ` ${text}` : text;
        const out = clampComment(text);
        expect(bytes(out)).toBeLessThanOrEqual(MAX_LIBVIRT_COMMENT);
        if (bytes(safe) <= MAX_LIBVIRT_COMMENT) expect(out).toBe(safe);
        else {
          expect(out.endsWith('…')).toBe(true);
          expect([...safe].slice(0, [...out].length - 1).join('')).toBe(out.slice(0, -1));
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('XML 1.0 characters', () => {
  it('accepts text, emoji and CJK; refuses U+FFFE, U+FFFF, C0 controls and unpaired surrogates', () => {
    expect(isXmlText('plain, ünïcödé ✓, 日本語, 😀, tab\tok')).toBe(true);
    for (const bad of ['\uFFFE', '\uFFFF', '\u0001', '\uD800', 'a\uDC00b']) expect(isXmlText(bad), JSON.stringify(bad)).toBe(false);
  });

  it('the validator refuses a filter whose comment carries one (defence behind the schema)', () => {
    const services = new Map();
    const global = compileGlobal([]);
    const ctx: VmContext = { services, departments: new Map(), departmentSpecs: new Map(), global: { filter: global, xml: renderFilterXml(global) } };
    const spec = vm('v').spec;
    const result = compileVm('v', { ...spec, rules: [{ action: 'accept', direction: 'in', protocol: 'tcp', ports: [{ port: 22 }], priority: 50, comment: 'x\uFFFF' } as never] }, ctx);
    expect(result.ok).toBe(false);
    expect(JSON.stringify(!result.ok && result.diagnostics)).toMatch(/XML 1\.0/);
    expect(validateFilter({ name: 'f', uuid: 'u', level: 'vm', refs: [], rules: [] })).toEqual([]);
  });
});
