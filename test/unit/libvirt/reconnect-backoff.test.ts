// The client's reconnect loop takes its delays from the project's one backoff helper
// (src/runtime/backoff.ts): the helper is wrapped here to see the policy and attempt numbers it gets.
import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodePacket, PacketReader } from '../../../src/libvirt/connection.js';
import { MessageStatus, MessageType, Proc } from '../../../src/libvirt/protocol.js';
import { XdrWriter } from '../../../src/libvirt/xdr.js';

const delays = vi.hoisted(() => [] as { policy: unknown; attempt: number; delay: number }[]);
vi.mock('../../../src/runtime/backoff.js', async (importActual) => {
  const actual = await importActual<typeof import('../../../src/runtime/backoff.js')>();
  return {
    ...actual,
    backoffDelay: (policy: Parameters<typeof actual.backoffDelay>[0], attempt: number) => {
      const delay = actual.backoffDelay(policy, attempt);
      delays.push({ policy, attempt, delay });
      return delay;
    },
  };
});
const { LibvirtClient } = await import('../../../src/libvirt/client.js');

let server: Server | undefined;
const peers: Socket[] = [];

/** A libvirtd that answers every call with an empty success (auth-list: no auth needed). */
function listen(path: string): Promise<void> {
  server = createServer((s) => {
    peers.push(s);
    const reader = new PacketReader();
    s.on('error', () => undefined);
    s.on('data', (d) =>
      reader.push(d, (h, _body) => {
        const body = h.procedure === Proc.authList ? new XdrWriter().uint(1).int(0).bytes() : Buffer.alloc(0);
        s.write(encodePacket({ ...h, type: MessageType.reply, status: MessageStatus.ok }, body));
      }),
    );
  });
  return new Promise((r) => server!.listen(path, r));
}

const until = async (what: string, f: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

afterEach(async () => {
  for (const p of peers.splice(0)) p.destroy();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

describe('reconnect backoff', () => {
  it('asks backoffDelay for attempts 1, 2, 3... with the configured policy, and starts again at 1 after a success', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'nwf-backoff-')), 'sock');
    const c = new LibvirtClient({ socketPath: path, reconnect: { baseMs: 4, maxMs: 16 } });
    let connected = 0;
    c.on('connected', () => connected++);
    await c.connectWithRetry(); // no socket yet: retries in the background
    await until('four failed attempts', () => delays.length >= 4);
    expect(delays.slice(0, 4).map((d) => d.attempt)).toEqual([1, 2, 3, 4]);
    for (const d of delays) {
      expect(d.policy).toEqual({ baseMs: 4, maxMs: 16 });
      // the helper's jitter: within [cap/2, cap] of the doubling delay
      const cap = Math.min(16, 4 * 2 ** (d.attempt - 1));
      expect(d.delay).toBeGreaterThanOrEqual(cap / 2);
      expect(d.delay).toBeLessThanOrEqual(cap);
    }
    await listen(path);
    await until('connected', () => connected === 1);
    delays.length = 0;
    peers[0]!.destroy(); // libvirtd drops the connection
    await until('reconnected', () => connected === 2);
    expect(delays[0]!.attempt).toBe(1);
    await c.close();
  });
});
