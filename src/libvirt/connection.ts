import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { LibvirtDisconnectedError, LibvirtError, LibvirtTimeoutError } from './errors.js';
import { HEADER_SIZE, MAX_PACKET, MessageStatus, MessageType, REMOTE_PROGRAM, REMOTE_PROTOCOL_VERSION } from './protocol.js';
import { XdrReader } from './xdr.js';

export interface Header {
  program: number;
  version: number;
  procedure: number;
  type: number;
  serial: number;
  status: number;
}

export function encodePacket(h: Header, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + HEADER_SIZE + body.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(h.program, 4);
  out.writeUInt32BE(h.version, 8);
  out.writeInt32BE(h.procedure, 12);
  out.writeInt32BE(h.type, 16);
  out.writeUInt32BE(h.serial, 20);
  out.writeInt32BE(h.status, 24);
  body.copy(out, 28);
  return out;
}

/**
 * Splits the byte stream into packets: a 4-byte total length, the 24-byte header, the body.
 * Chunks are joined only once a whole packet has arrived, so a large reply (a domain's XML) that
 * comes in many socket reads is copied once, not once per read.
 */
export class PacketReader {
  private chunks: Buffer[] = [];
  private size = 0;

  push(data: Buffer, onPacket: (h: Header, body: Buffer) => void): void {
    this.chunks.push(data);
    this.size += data.length;
    while (this.size >= 4) {
      const first = this.chunks[0]!;
      const length = first.length >= 4 ? first.readUInt32BE(0) : Buffer.concat(this.chunks, 4).readUInt32BE(0);
      if (length < 4 + HEADER_SIZE || length > MAX_PACKET) throw new LibvirtDisconnectedError(`libvirt protocol error: packet length ${length}`);
      if (this.size < length) return;
      const buf = this.chunks.length === 1 ? first : Buffer.concat(this.chunks, this.size);
      const h: Header = {
        program: buf.readUInt32BE(4),
        version: buf.readUInt32BE(8),
        procedure: buf.readInt32BE(12),
        type: buf.readInt32BE(16),
        serial: buf.readUInt32BE(20),
        status: buf.readInt32BE(24),
      };
      const rest = buf.subarray(length);
      this.chunks = rest.length ? [rest] : [];
      this.size = rest.length;
      onPacket(h, buf.subarray(28, length));
    }
  }
}

/** remote_error: code, domain, message, level, dom, str1-3, int1, int2, net (only the first three matter here). */
export function decodeError(body: Buffer, procedure?: string): LibvirtError {
  try {
    const r = new XdrReader(body);
    const code = r.int();
    const domain = r.int();
    const message = r.optString() ?? `libvirt error ${code}`;
    return new LibvirtError(code, domain, message, procedure);
  } catch {
    return new LibvirtError(-1, -1, 'undecodable libvirt error', procedure);
  }
}

interface Pending {
  resolve: (body: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  procedure: string;
}

/**
 * One socket to libvirtd with many calls in flight, matched to their replies by serial number.
 * Asynchronous messages (events) are emitted as 'message'. When the socket closes, every pending
 * call fails at once with LibvirtDisconnectedError and 'close' is emitted: nothing hangs.
 */
export class RpcConnection extends EventEmitter {
  private readonly pending = new Map<number, Pending>();
  private readonly reader = new PacketReader();
  private serial = 1;
  private closed = false;

  private constructor(private readonly socket: Socket) {
    super();
    socket.on('data', (d: Buffer) => {
      try {
        this.reader.push(d, (h, body) => this.onPacket(h, body));
      } catch (err) {
        socket.destroy(err as Error);
      }
    });
    socket.on('close', () => this.onClose());
    socket.on('error', () => undefined); // 'close' follows; pending calls are rejected there
  }

  static open(path: string, timeoutMs: number): Promise<RpcConnection> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path });
      const timer = setTimeout(() => socket.destroy(new LibvirtDisconnectedError(`connect to ${path} timed out`)), timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RpcConnection(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new LibvirtDisconnectedError(`cannot connect to libvirtd at ${path}: ${err.message}`));
      });
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  call(procedure: number, name: string, body: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new LibvirtDisconnectedError(`${name}: not connected to libvirtd`));
    const serial = this.serial;
    this.serial = (this.serial + 1) >>> 0 || 1;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(serial);
        reject(new LibvirtTimeoutError(`${name}: no reply from libvirtd within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(serial, { resolve, reject, timer, procedure: name });
      this.socket.write(
        encodePacket({ program: REMOTE_PROGRAM, version: REMOTE_PROTOCOL_VERSION, procedure, type: MessageType.call, serial, status: MessageStatus.ok }, body),
      );
    });
  }

  private onPacket(h: Header, body: Buffer): void {
    if (h.program !== REMOTE_PROGRAM) return; // keepalive and other programs: we never enable them
    if (h.type === MessageType.message) {
      this.emit('message', h.procedure, body);
      return;
    }
    if (h.type !== MessageType.reply && h.type !== MessageType.replyWithFds) return;
    const p = this.pending.get(h.serial);
    if (!p) return; // reply to a call that already timed out
    this.pending.delete(h.serial);
    clearTimeout(p.timer);
    if (h.status === MessageStatus.ok) p.resolve(body);
    else p.reject(decodeError(body, p.procedure));
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new LibvirtDisconnectedError(`${p.procedure}: connection to libvirtd lost`));
    }
    this.pending.clear();
    this.emit('close');
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
    this.onClose();
  }
}
