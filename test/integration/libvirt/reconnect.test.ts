// Failure behaviour against the real daemon: a hung libvirtd (SIGSTOP) gives timeouts, a killed one
// (SIGKILL) fails every call in flight at once, and the client reconnects by itself when libvirtd is
// back, with its event registration renewed. Runs last-ish and restores the daemon in every case.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtDisconnectedError, LibvirtTimeoutError, type DomainLifecycleEvent, type LibvirtClient } from '../../../src/libvirt/index.js';
import { filterXml, libvirtdPid, newClient, prefix, removeFilters, until, waitForEvent } from './support.js';

const P = prefix('rc');
let client: LibvirtClient;
const states: boolean[] = [];

beforeAll(async () => {
  client = newClient({ onConnectionChange: (up) => states.push(up) });
  await client.connect();
});

afterAll(async () => {
  execFileSync('bash', ['hack/libvirt-up.sh'], { stdio: 'ignore' }); // whatever happened above
  await until('reconnect', () => client.connected);
  await removeFilters(client, P);
  await client.close();
});

describe('a libvirtd that stops answering (SIGSTOP)', () => {
  it('times calls out, queued ones included, and works again once it answers', async () => {
    const impatient = newClient({ callTimeoutMs: 500, concurrency: 1 });
    await impatient.connect();
    const pid = libvirtdPid();
    process.kill(pid, 'SIGSTOP');
    try {
      const t0 = Date.now();
      const results = await Promise.allSettled(Array.from({ length: 5 }, () => impatient.listFilters()));
      const elapsed = Date.now() - t0;
      for (const r of results) expect(r.status === 'rejected' && r.reason).toBeInstanceOf(LibvirtTimeoutError);
      // one deadline for all: the queued calls did not each wait 500 ms behind the one before
      expect(elapsed).toBeLessThan(2000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // the late replies are dropped; the connection is still good
    expect((await impatient.listFilters()).length).toBeGreaterThan(0);
    await impatient.close();
  });
});

describe('a libvirtd that dies (SIGKILL) and comes back', () => {
  it('fails calls in flight and new calls at once, reconnects with backoff, re-registers events', async () => {
    const lost = new Promise<void>((r) => client.once('disconnected', () => r()));
    const names = Array.from({ length: 300 }, (_, i) => `${P}-inflight-${i}`);
    let done = 0;
    const inflight = names.map((n) => client.defineFilter(filterXml(n)).finally(() => done++));
    await until('some defines to complete', () => done >= 10);
    process.kill(libvirtdPid(), 'SIGKILL');
    await lost;
    const t0 = Date.now();
    const settled = await Promise.allSettled(inflight);
    expect(Date.now() - t0).toBeLessThan(1000);
    const failed = settled.filter((s) => s.status === 'rejected');
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) expect(f.status === 'rejected' && f.reason).toBeInstanceOf(LibvirtDisconnectedError);

    const t1 = Date.now();
    const err = await client.listFilters().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtDisconnectedError);
    expect(Date.now() - t1).toBeLessThan(500); // at once, not after a 30 s call timeout
    expect(client.connected).toBe(false);

    // a client started while libvirtd is down comes up by itself too
    const late = newClient();
    await late.connectWithRetry();
    expect(late.connected).toBe(false);

    const back = new Promise<void>((r) => client.once('connected', () => r()));
    execFileSync('bash', ['hack/libvirt-up.sh'], { stdio: 'ignore' });
    await back;
    expect(states.slice(-2)).toEqual([false, true]);
    expect((await client.listFilters()).length).toBeGreaterThan(0);
    await until('the late client to connect', () => late.connected);
    expect((await late.lookupFilterByName('clean-traffic')).name).toBe('clean-traffic');
    await late.close();

    // events flow again on the new connection
    const events: DomainLifecycleEvent[] = [];
    client.on('domain-event', (e) => events.push(e));
    const dom = `${P}-after`;
    const file = join(mkdtempSync(join(tmpdir(), 'nwf-dom-')), 'd.xml');
    writeFileSync(file, `<domain type='qemu'><name>${dom}</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>`);
    execFileSync('virsh', ['-q', '-c', 'qemu:///system', 'define', file], { stdio: 'pipe' });
    try {
      await waitForEvent(events, dom, 'defined');
    } finally {
      spawnSync('virsh', ['-q', '-c', 'qemu:///system', 'undefine', dom]);
    }
  });

  it('close() stops reconnecting and leaves no timer or socket behind', async () => {
    const c = newClient();
    await c.connect();
    await c.close();
    expect(c.connected).toBe(false);
    const err = await c.listFilters().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtDisconnectedError);
  });
});
