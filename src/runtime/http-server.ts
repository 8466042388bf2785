import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';

export interface Probe {
  /** Liveness: the process can make progress. */
  healthy(): boolean;
  /** Readiness: caches synced, connections up. */
  ready(): boolean;
}

/**
 * `[host]:port`: `:8080` (every address: IPv6 and IPv4 where the host has both), `127.0.0.1:8080`,
 * `[::]:8080`, `[::1]:8080`. An IPv6-only cluster needs the bracketed forms or the empty host.
 */
export function parseAddr(addr: string): { host: string | undefined; port: number } {
  const i = addr.lastIndexOf(':');
  let host: string | undefined = i > 0 ? addr.slice(0, i) : undefined;
  if (host?.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(addr.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535 || host === '') throw new Error(`invalid address "${addr}": expected [host]:port`);
  return { host, port };
}

/** Serves /metrics, /healthz and /readyz. Returns the bound port (useful with port 0 in tests). */
export async function startHttpServer(addr: string, registry: Registry, probe: Probe, log: Logger): Promise<{ server: Server; port: number }> {
  const { host, port } = parseAddr(addr);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (err: unknown) => {
          res.writeHead(500);
          res.end(String(err));
        },
      );
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      const ok = path === '/healthz' ? probe.healthy() : probe.ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ok ? 'ok\n' : 'not ready\n');
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // No host: Node listens on :: with IPv4 mapped in (dual stack), or on 0.0.0.0 without IPv6.
    if (host === undefined) server.listen(port, () => resolve());
    else server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as { port: number }).port;
  log.info({ addr: `${host?.includes(':') ? `[${host}]` : (host ?? '')}:${bound}` }, 'serving /metrics, /healthz, /readyz');
  return { server, port: bound };
}

/**
 * Starts the metrics server and, on its own address when configured so, the health server; both
 * are closed by `shutdown`.
 */
export async function startProbeServers(
  addrs: { metricsAddr: string; healthAddr: string },
  registry: Registry,
  probe: Probe,
  log: Logger,
  shutdown: { add(name: string, close: () => Promise<void>): void },
): Promise<void> {
  const unique = [...new Set([addrs.metricsAddr, addrs.healthAddr])];
  for (const addr of unique) {
    const { server } = await startHttpServer(addr, registry, probe, log);
    shutdown.add(`http ${addr}`, () => new Promise<void>((resolve) => server.close(() => resolve())));
  }
}
