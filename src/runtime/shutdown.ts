import type { Logger } from './logger.js';

type Closer = { name: string; close: () => Promise<void> | void };

/**
 * Ordered shutdown: closers run in reverse registration order (last started, first stopped), each
 * bounded by a timeout so one stuck closer cannot keep the process alive past the grace period.
 */
export class Shutdown {
  private readonly closers: Closer[] = [];
  private running: Promise<void> | undefined;
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();

  constructor(private readonly log: Logger, private readonly timeoutMs = 10_000) {
    this.signal = this.controller.signal;
  }

  add(name: string, close: Closer['close']): void {
    this.closers.push({ name, close });
  }

  get stopping(): boolean {
    return this.controller.signal.aborted;
  }

  /** Installs SIGTERM/SIGINT handlers that run the closers and then exit. */
  installSignalHandlers(): void {
    const onSignal = (sig: NodeJS.Signals) => {
      this.log.info({ signal: sig }, 'shutting down');
      void this.run().then(() => process.exit(0));
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      this.controller.abort();
      for (const c of [...this.closers].reverse()) {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve(c.close()),
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error('timed out')), this.timeoutMs);
            }),
          ]);
        } catch (err) {
          this.log.warn({ err, closer: c.name }, 'closer failed');
        } finally {
          clearTimeout(timer);
        }
      }
      this.log.info('stopped');
    })();
    return this.running;
  }
}
