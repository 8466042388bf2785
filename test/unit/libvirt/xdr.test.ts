import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeError, encodePacket, PacketReader, type Header } from '../../../src/libvirt/connection.js';
import { XdrError, XdrReader, XdrWriter } from '../../../src/libvirt/xdr.js';
import { bytesToUuid, uuidToBytes } from '../../../src/libvirt/uuid.js';

describe('XDR', () => {
  it('encodes like RFC 4506: big-endian, length-prefixed, padded to 4 bytes', () => {
    const b = new XdrWriter().int(-2).uint(0xffffffff).string('abcde').optString(undefined).optString('x').bytes();
    expect(b.toString('hex')).toBe(
      'fffffffe' + 'ffffffff' + '00000005' + '6162636465000000' + '00000000' + '00000001' + '00000001' + '78000000',
    );
  });

  it('round-trips any values', () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.string(), fc.option(fc.string(), { nil: undefined }), fc.uint8Array({ maxLength: 40 }), (i, s, o, bytes) => {
        const w = new XdrWriter(4).int(i).string(s).optString(o).opaque(Buffer.from(bytes));
        const r = new XdrReader(w.bytes());
        expect(r.int()).toBe(i);
        expect(r.string()).toBe(s);
        expect(r.optString()).toBe(o);
        expect([...r.opaque()]).toEqual([...bytes]);
        expect(r.remaining).toBe(0);
      }),
    );
  });

  it('grows from any initial size, zero included', () => {
    expect(new XdrWriter(0).string('abc').int(1).bytes().toString('hex')).toBe('00000003616263' + '00' + '00000001');
  });

  it('refuses truncated input instead of reading garbage', () => {
    const b = new XdrWriter().string('hello').bytes();
    expect(() => new XdrReader(b.subarray(0, 6)).string()).toThrow(XdrError);
    expect(() => new XdrReader(Buffer.from([0, 0, 0, 9])).array((r) => r.int(), 4)).toThrow(/exceeds/);
  });

  it('converts UUIDs', () => {
    const u = '6f1c3c1e-3b7a-4a5e-9d2a-1b2c3d4e5f60';
    expect(bytesToUuid(uuidToBytes(u))).toBe(u);
    expect(() => uuidToBytes('nope')).toThrow(/invalid UUID/);
  });
});

describe('framing', () => {
  const header: Header = { program: 0x20008086, version: 1, procedure: 286, type: 1, serial: 7, status: 0 };

  it('splits packets however the stream is chunked', () => {
    const body = new XdrWriter().string('payload').bytes();
    const stream = Buffer.concat([encodePacket(header, body), encodePacket({ ...header, serial: 8 }, Buffer.alloc(0))]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length }), { maxLength: 6 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const reader = new PacketReader();
        const got: [number, string][] = [];
        let prev = 0;
        for (const p of [...points, stream.length]) {
          reader.push(stream.subarray(prev, p), (h, b) => got.push([h.serial, b.toString('hex')]));
          prev = p;
        }
        expect(got).toEqual([
          [7, body.toString('hex')],
          [8, ''],
        ]);
      }),
    );
  });

  it('rejects an impossible packet length', () => {
    expect(() => new PacketReader().push(Buffer.from([0, 0, 0, 3]), () => undefined)).toThrow(/packet length/);
  });

  it('decodes remote_error', () => {
    const body = new XdrWriter().int(55).int(10).optString('Requested operation is not valid: nwfilter is in use').int(2).bytes();
    const e = decodeError(body, 'nwfilter-undefine');
    expect(e).toMatchObject({ code: 55, domain: 10, procedure: 'nwfilter-undefine', message: 'Requested operation is not valid: nwfilter is in use' });
  });
});
