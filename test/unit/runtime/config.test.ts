import { describe, expect, it } from 'vitest';
import { AgentConfig, ConfigError, Duration, ControllerConfig, agentFallbacks, controllerFallbacks, loadConfig } from '../../../src/runtime/config.js';
import pino from 'pino';
import { parseAddr, startHttpServer } from '../../../src/runtime/http-server.js';
import { createMetrics } from '../../../src/runtime/metrics.js';

describe('configuration', () => {
  it('takes flags over NWF_* environment over fallbacks over defaults', () => {
    const env = { NWF_METRICS_ADDR: '127.0.0.1:9999', NWF_RESYNC_PERIOD: '30s', NODE_NAME: 'from-env' };
    const c = loadConfig(AgentConfig, ['--resync-period', '2m'], env, agentFallbacks(env));
    expect(c).toMatchObject({ nodeName: 'from-env', metricsAddr: '127.0.0.1:9999', resyncPeriod: 120_000, healthAddr: ':9091', libvirtSocket: '/var/run/libvirt/libvirt-sock', libvirtUri: 'qemu:///system' });
  });

  it('takes the agent\'s libvirt URI from --libvirt-uri or NWF_LIBVIRT_URI, and rejects what is not a URI', () => {
    const base = ['--node-name', 'n'];
    expect(loadConfig(AgentConfig, [...base, '--libvirt-uri', 'lxc:///system'], {}, {}).libvirtUri).toBe('lxc:///system');
    expect(loadConfig(AgentConfig, base, { NWF_LIBVIRT_URI: 'lxc:///system' }, {}).libvirtUri).toBe('lxc:///system');
    expect(loadConfig(AgentConfig, [...base, '--libvirt-uri', 'qemu:///session'], { NWF_LIBVIRT_URI: 'lxc:///system' }, {}).libvirtUri).toBe('qemu:///session');
    expect(() => loadConfig(AgentConfig, [...base, '--libvirt-uri', 'lxc'], {}, {})).toThrow(/--libvirt-uri \(env NWF_LIBVIRT_URI\): must be a libvirt URI/);
  });

  it('names the flag and the variable in errors', () => {
    expect(() => loadConfig(AgentConfig, [], {}, agentFallbacks({}))).toThrow(/--node-name \(env NWF_NODE_NAME\): is required/);
    expect(() => loadConfig(AgentConfig, ['--node-name', 'n', '--resync-period', 'soon'], {}, {})).toThrow(ConfigError);
    expect(() => loadConfig(AgentConfig, ['--bogus', 'x'], {}, {})).toThrow(ConfigError);
  });

  it('parses booleans and durations for the controller', () => {
    const env = { POD_NAMESPACE: 'ops', POD_NAME: 'ctl-0' };
    const c = loadConfig(ControllerConfig, ['--leader-elect', 'false', '--lease-duration', '20s'], env, controllerFallbacks(env));
    expect(c).toMatchObject({ leaderElect: false, leaseDuration: 20_000, leaderElectionNamespace: 'ops', identity: 'ctl-0' });
  });

  it('parses listen addresses', () => {
    expect(parseAddr(':8080')).toEqual({ host: undefined, port: 8080 });
    expect(parseAddr('[::]:9090')).toEqual({ host: '::', port: 9090 });
    expect(parseAddr('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(AgentConfig.safeParse({ nodeName: 'n', metricsAddr: '[::]:9090' }).success).toBe(true);
    expect(AgentConfig.safeParse({ nodeName: 'n', metricsAddr: '::9090' }).success).toBe(false);
    expect(parseAddr('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(() => parseAddr('nope')).toThrow(/invalid address/);
  });
});

describe('Duration', () => {
  it('takes Go-style sums of units', () => {
    expect(Duration.parse('250ms')).toBe(250);
    expect(Duration.parse('1m30s')).toBe(90_000);
    expect(Duration.parse('1h15m')).toBe(4_500_000);
    expect(Duration.parse('2s500ms')).toBe(2_500);
    for (const bad of ['1m30', '30', 'soon', '1.5m', '']) expect(Duration.safeParse(bad).success, bad).toBe(false);
  });
});

describe('probe servers', () => {
  it('serve on every address family when the host is empty, and on a bracketed IPv6 address', async () => {
    const registry = createMetrics({ defaultMetrics: false }).registry;
    const probe = { healthy: () => true, ready: () => true };
    const log = pino({ level: 'silent' });
    for (const [addr, urls] of [
      [':0', ['127.0.0.1', '[::1]']],
      ['[::1]:0', ['[::1]']],
    ] as const) {
      const { server, port } = await startHttpServer(addr, registry, probe, log);
      try {
        for (const host of urls) expect((await fetch(`http://${host}:${port}/healthz`)).status, `${addr} via ${host}`).toBe(200);
      } finally {
        await new Promise((r) => server.close(r));
      }
    }
  });

  it('each binary exports only its own metrics', async () => {
    const names = async (component: 'controller' | 'agent') => (await createMetrics({ defaultMetrics: false, component }).registry.getMetricsAsJSON()).map((m) => m.name);
    const controller = await names('controller');
    const agent = await names('agent');
    expect(controller).toContain('nwfilter_operator_leader');
    expect(controller).not.toContain('nwfilter_operator_libvirt_connected');
    expect(agent).toContain('nwfilter_operator_libvirt_connected');
    expect(agent).not.toContain('nwfilter_operator_leader');
    expect(agent).toContain('nwfilter_operator_reconcile_total');
    expect(controller).toContain('nwfilter_operator_reconcile_total');
  });
});
