/** An error whose message is for the user as it is: printed without a stack, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}
