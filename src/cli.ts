#!/usr/bin/env node
import { runExplain, EXPLAIN_USAGE } from './cli/explain.js';
import { runRender, RENDER_USAGE } from './cli/render.js';
import { runController, CONTROLLER_USAGE } from './cli/controller.js';
import { runAgent, AGENT_USAGE } from './cli/agent.js';
import { UsageError } from './cli/usage-error.js';

type Command = (argv: string[], out: NodeJS.WritableStream) => number | Promise<number>;

const COMMANDS: Record<string, { run: Command; usage: string }> = {
  render: { run: runRender, usage: RENDER_USAGE },
  explain: { run: runExplain, usage: EXPLAIN_USAGE },
  controller: { run: (argv) => runController(argv), usage: CONTROLLER_USAGE },
  agent: { run: (argv) => runAgent(argv), usage: AGENT_USAGE },
};

function usage(): string {
  return ['usage:', ...Object.values(COMMANDS).map((c) => `  ${c.usage}`)].join('\n') + '\n';
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
