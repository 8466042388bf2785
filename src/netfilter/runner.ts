import { spawn } from 'node:child_process';

/** What a command printed and how it ended. */
export interface CommandResult {
  /** null when it was killed (timeout). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs one command (argv[0] looked up in PATH) with `input` on stdin. Pluggable, because kernel IP
 * sets belong to a network namespace: tests run the manager inside `ip netns exec <ns>`, and counting
 * runners show how many processes a sync took. Rejects only when the command cannot be started.
 */
export type CommandRunner = (argv: readonly string[], input?: string) => Promise<CommandResult>;

export interface SpawnRunnerOptions {
  /** Put before every command, e.g. ['ip', 'netns', 'exec', 'ns1']. */
  prefix?: readonly string[];
  /** Kill a command after this long; default 30 s (a restore of 100,000 elements takes well under 1 s). */
  timeoutMs?: number;
}

/** Runs commands with child_process.spawn, in the C locale (ipset's messages are matched in English). */
export function spawnRunner(options: SpawnRunnerOptions = {}): CommandRunner {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return (argv, input) => {
    const full = [...(options.prefix ?? []), ...argv];
    const [file, ...args] = full;
    if (!file) return Promise.reject(new Error('empty command'));
    return new Promise((resolve, reject) => {
      const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ exitCode: code, stdout, stderr });
      });
      // A command that exits before reading all of its input must not fail us with EPIPE.
      child.stdin.on('error', () => undefined).end(input ?? '');
    });
  };
}

/** A runner whose commands run in network namespace `ns` (ip sets are per network namespace). */
export const netnsRunner = (ns: string, options: Omit<SpawnRunnerOptions, 'prefix'> = {}): CommandRunner =>
  spawnRunner({ ...options, prefix: ['ip', 'netns', 'exec', ns] });
