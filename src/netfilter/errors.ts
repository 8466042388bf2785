/** Every failure of the IP set manager: the agent can tell ours from libvirt's and Kubernetes' errors. */
export class IpSetError extends Error {
  override name = 'IpSetError';
}

/** A set name or member we refuse before any command runs (retrying cannot help). */
export class InvalidMemberError extends IpSetError {
  override name = 'InvalidMemberError';
}

/**
 * An `ipset` process failed. The message carries its stderr; `line` is the line of the batch that
 * `ipset restore` names ("Error in line 3: ..."), whose predecessors were applied (restore is not
 * transactional: measured, a syntax error in line 3 left the set of lines 1-2 created and filled).
 */
export class IpSetCommandError extends IpSetError {
  override name = 'IpSetCommandError';
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly line?: number,
  ) {
    super(`${argv.join(' ')}: ${exitCode === null ? 'killed' : `exit ${exitCode}`}: ${stderr.trim() || '(no output)'}`);
  }
}
