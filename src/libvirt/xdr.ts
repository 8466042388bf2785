/**
 * XDR (RFC 4506) as libvirt's remote protocol uses it: big-endian 32-bit ints, length-prefixed
 * strings and opaque data padded to 4 bytes, optional data as a 0/1 discriminant.
 * Hand-written on purpose. Of the npm XDR packages only @stellar/js-xdr is maintained; it is a
 * schema DSL (struct/union classes built with xdr.config, Hyper objects for 64-bit values) shaped
 * by Stellar's generated types. libvirt's messages need about ten primitives read in order, and a
 * pull reader over one Buffer, with no per-field objects, is what keeps a call within a few tens of
 * microseconds of the raw C client (see docs/libvirt-client.md).
 */
export class XdrWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = Math.max(64, this.buf.length * 2);
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  uint(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  bool(v: boolean): this {
    return this.int(v ? 1 : 0);
  }

  /** Fixed-length opaque data (e.g. a 16-byte UUID). */
  fixedOpaque(data: Buffer): this {
    const padded = (data.length + 3) & ~3;
    this.ensure(padded);
    data.copy(this.buf, this.pos);
    this.buf.fill(0, this.pos + data.length, this.pos + padded);
    this.pos += padded;
    return this;
  }

  opaque(data: Buffer): this {
    this.uint(data.length);
    return this.fixedOpaque(data);
  }

  string(s: string): this {
    return this.opaque(Buffer.from(s, 'utf8'));
  }

  /** libvirt's `remote_string`: an optional string. */
  optString(s: string | undefined): this {
    this.bool(s !== undefined);
    if (s !== undefined) this.string(s);
    return this;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export class XdrError extends Error {
  override name = 'XdrError';
}

export class XdrReader {
  private pos = 0;

  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new XdrError(`XDR: need ${n} bytes at offset ${this.pos}, have ${this.buf.length - this.pos}`);
  }

  int(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  bool(): boolean {
    return this.int() !== 0;
  }

  fixedOpaque(length: number): Buffer {
    const padded = (length + 3) & ~3;
    this.need(padded);
    const out = this.buf.subarray(this.pos, this.pos + length);
    this.pos += padded;
    return out;
  }

  opaque(max = 0x7fffffff): Buffer {
    const length = this.uint();
    if (length > max) throw new XdrError(`XDR: length ${length} exceeds ${max}`);
    return this.fixedOpaque(length);
  }

  string(max?: number): string {
    return this.opaque(max).toString('utf8');
  }

  optString(): string | undefined {
    return this.bool() ? this.string() : undefined;
  }

  /** A variable-length array of items. */
  array<T>(item: (r: XdrReader) => T, max = 0x7fffffff): T[] {
    const n = this.uint();
    if (n > max) throw new XdrError(`XDR: array of ${n} exceeds ${max}`);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(item(this));
    return out;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }
}
