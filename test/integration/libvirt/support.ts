// Shared by the libvirt integration tests: a client on the socket the global setup provides, a
// unique name prefix per run, and helpers that wait instead of sleeping blindly.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { inject } from 'vitest';
import { LibvirtClient, type DomainLifecycleEvent, type LibvirtClientOptions } from '../../../src/libvirt/index.js';

export const socketPath = (): string => inject('libvirtSocket');

/** Unique per run, so that leftovers of a killed run never collide and are easy to spot. */
export const prefix = (what: string): string => `lvt-${what}-${Date.now().toString(36)}`;

export function newClient(options: LibvirtClientOptions = {}): LibvirtClient {
  return new LibvirtClient({ socketPath: socketPath(), reconnect: { baseMs: 100, maxMs: 1000 }, ...options });
}

export const filterXml = (name: string, body = "<rule action='accept' direction='in' priority='10'><tcp dstportstart='22'/></rule>", uuid?: string): string =>
  `<filter name='${name}' chain='root'>${uuid ? `<uuid>${uuid}</uuid>` : ''}${body}</filter>`;

/** Undefines every filter whose name starts with `p` (those a test made). */
export async function removeFilters(client: LibvirtClient, p: string): Promise<void> {
  for (const f of (await client.listFilters()).filter((f) => f.name.startsWith(p))) await client.undefineFilter(f).catch(() => undefined);
}

export async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
}

export async function until<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export const waitForEvent = (events: DomainLifecycleEvent[], domain: string, name: string): Promise<DomainLifecycleEvent> =>
  until(`${name} event of ${domain} (got ${events.map((e) => `${e.domain.name}:${e.event}`).join(', ')})`, () => events.find((e) => e.domain.name === domain && e.event === name));

/** The running libvirtd's pid, from the pid file it writes as root. */
export function libvirtdPid(): number {
  const pid = Number(readFileSync('/run/libvirtd.pid', 'utf8').trim());
  if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'libvirtd') throw new Error(`pid ${pid} is not libvirtd`);
  return pid;
}
