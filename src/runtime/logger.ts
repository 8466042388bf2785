import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** JSON logs on stdout; one child logger per component. */
export function createLogger(level: LevelWithSilent = 'info', component?: string): Logger {
  const root = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
  return component ? root.child({ component }) : root;
}

/** For library code whose caller passed no logger. */
export const silentLogger: Logger = pino({ level: 'silent' });
