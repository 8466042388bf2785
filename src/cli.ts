#!/usr/bin/env node
import { UsageError } from './cli/usage-error.js';

type Command = (argv: string[], out: NodeJS.WritableStream) => number | Promise<number>;

// Commands are loaded on demand: `render` and `explain` need neither the Kubernetes client nor libvirt.
const COMMANDS: Record<string, { run: Command; usage: string }> = {
  render: {
    run: async (argv, out) => (await import('./cli/render.js')).runRender(argv, out),
    usage: 'nwfilter-operator render -f <file|dir>... -o <dir>',
  },
  explain: {
    run: async (argv, out) => (await import('./cli/explain.js')).runExplain(argv, out),
    usage:
      'nwfilter-operator explain -f <file|dir>... --vm <VMFilter> --packet "<in|out> <proto> [port] [from|to <ip>] [sport <n>] [host]" [--closed] [--json]',
  },
  controller: {
    run: async (argv) => (await import('./cli/controller.js')).runController(argv),
    usage: 'nwfilter-operator controller [--kubeconfig path] [--metrics-addr :8080] [--health-addr :8081] [--leader-elect true] ...',
  },
  agent: {
    run: async (argv) => (await import('./cli/agent.js')).runAgent(argv),
    usage: 'nwfilter-operator agent --node-name <node> [--libvirt-socket /var/run/libvirt/libvirt-sock] [--libvirt-uri qemu:///system] [--kubeconfig path] [--resync-period 5m] ...',
  },
};

function usage(): string {
  return ['usage:', ...Object.values(COMMANDS).map((c) => `  ${c.usage}`), '', 'Every flag may also be set as NWF_<FLAG> (e.g. NWF_METRICS_ADDR). See README.md.'].join('\n') + '\n';
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`unknown command "${name}"\n${usage()}`);
    return 2;
  }
  try {
    return await command.run(rest, process.stdout);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (e instanceof UsageError || (e as Error).name === 'ConfigError' || code === 'ENOENT' || code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`error: ${(e as Error).message}\n`);
      return 2;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
