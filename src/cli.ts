#!/usr/bin/env node
import { createRequire } from 'node:module';
import { UsageError } from './cli/usage-error.js';

type Command = (argv: string[], out: NodeJS.WritableStream) => number | Promise<number>;

interface CommandInfo {
  run: Command;
  usage: string;
  /** What the command does and every flag it takes (loaded on demand, like the command). */
  help: () => Promise<string>;
}

const FILES = '  -f, --file <file|dir>  manifests (YAML, several documents per file; a directory is read recursively); repeatable';

// Commands are loaded on demand: `render` and `explain` need neither the Kubernetes client nor libvirt.
const COMMANDS: Record<string, CommandInfo> = {
  render: {
    run: async (argv, out) => (await import('./cli/render.js')).runRender(argv, out),
    usage: 'nwfilter-operator render -f <file|dir>... -o <dir>',
    help: async () =>
      [
        'Writes <dir>/<filter>.xml for every filter: exactly the XML the agent defines; and <dir>/ipsets.txt, the kernel IP sets of address',
        'groups and peers as `ipset restore` reads them (members as the input resolves them).',
        '',
        FILES,
        '  -o, --output <dir>     where to write (created if missing)',
      ].join('\n'),
  },
  explain: {
    run: async (argv, out) => (await import('./cli/explain.js')).runExplain(argv, out),
    usage: 'nwfilter-operator explain -f <file|dir>... --vm <VMFilter> --packet "<in|out> <proto> [port] [icmp type] [from|to <ip>] [sport <n>] [ipv6] [host]" [--closed] [--json]',
    help: async () =>
      [
        "Says what the kernel does to a connection of a VM, evaluated on the iptables rules libvirt makes of its filters.",
        '',
        FILES,
        '  --vm <name>            the VMFilter',
        '  --packet "<spec>"      <in|out> <tcp|udp|sctp|icmp> [port] [from|to <ip>] [sport <n>] [ipv6] [host]; an IPv6 address (or ipv6) makes',
        '                         it IPv6; ICMP: an echo by default, or a type by name (echo-request, destination-unreachable, router-advertisement,',
        '                         neighbor-solicitation, ...) or by number (type 13 [code 0]), which is evaluated as one packet on its own',
        '  --closed               nothing listens on the port (what a refused or dropped connection looks like)',
        '  --json                 the same as JSON',
      ].join('\n'),
  },
  controller: {
    run: async (argv) => (await import('./cli/controller.js')).runController(argv),
    usage: 'nwfilter-operator controller [flags]',
    help: async () => {
      const { ControllerConfig, flagHelp } = await import('./runtime/config.js');
      return ['Watches the three kinds and writes their status (Accepted, Ready, counts); one replica leads.', '', ...flagHelp(ControllerConfig)].join('\n');
    },
  },
  agent: {
    run: async (argv) => (await import('./cli/agent.js')).runAgent(argv),
    usage: 'nwfilter-operator agent --node-name <node> [flags]',
    help: async () => {
      const { AgentConfig, flagHelp } = await import('./runtime/config.js');
      return ["Applies the VMs of one node to its libvirtd and reports Applied (a DaemonSet: one per hypervisor node).", '', ...flagHelp(AgentConfig)].join('\n');
    },
  },
};

function usage(): string {
  return (
    [
      'usage:',
      ...Object.values(COMMANDS).map((c) => `  ${c.usage}`),
      '  nwfilter-operator <command> --help',
      '  nwfilter-operator --version',
      '',
      'Every flag of controller and agent may also be set as NWF_<FLAG> (e.g. NWF_METRICS_ADDR). See README.md.',
    ].join('\n') + '\n'
  );
}

/** The version of the package this binary belongs to (package.json sits one level above src/ and dist/). */
function version(): string {
  return (createRequire(import.meta.url)('../package.json') as { version: string }).version;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(`nwfilter-operator ${version()}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`unknown command "${name}"\n${usage()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: ${command.usage}\n\n${await command.help()}\n`);
    return 0;
  }
  try {
    return await command.run(rest, process.stdout);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (e instanceof UsageError || (e as Error).name === 'ConfigError' || code === 'ENOENT' || code?.startsWith('ERR_PARSE_ARGS')) {
      // Messages are printed as they are, with one prefix (some already start with "error:").
      const message = (e as Error).message.replace(/^error:\s*/i, '');
      const flagTrouble = code?.startsWith('ERR_PARSE_ARGS') || (e as Error).name === 'ConfigError';
      process.stderr.write(`error: ${message}\n${flagTrouble ? `usage: ${command.usage} (${name} --help lists every flag)\n` : ''}`);
      return 2;
    }
    throw e;
  }
}

// `explain ... | head` closes the pipe early: that is the reader's choice, not an error of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
process.exitCode = await main(process.argv.slice(2));
