/**
 * Cleanup as a list of steps: each runs even when an earlier one failed (a failed delete must not
 * leave a domain or a lab behind), and `done` reports every failure at once.
 */
export function cleanupSteps(): { step: (what: string, f: () => unknown) => Promise<void>; done: () => void } {
  const errors: string[] = [];
  return {
    step: async (what, f) => {
      try {
        await f();
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`);
      }
    },
    done: () => {
      if (errors.length) throw new Error(`cleanup: ${errors.join('; ')}`);
    },
  };
}
