/**
 * How long a filter define may take. libvirtd rebuilds the firewall of every running interface whose
 * filter tree contains the redefined filter inside the define call, spawning one iptables process per
 * rule: measured 3.7-4.9 s per bound interface on a 2-core host (bench/bound-interfaces.bench.ts).
 * A fixed 30 s deadline failed every define that touched more than about 7 interfaces, and the retry
 * then queued another full rebuild behind the first. The deadline grows with the interfaces instead.
 */
export const DEFINE_BASE_MS = 30_000;
/** About three times the measured cost per interface: room for a loaded host. */
export const DEFINE_PER_INTERFACE_MS = 15_000;
/** From this many running interfaces a define is announced in status (Applied=False/Realizing). */
export const ANNOUNCE_FROM_INTERFACES = 3;

export function defineDeadlineMs(runningInterfaces: number): number {
  return DEFINE_BASE_MS + DEFINE_PER_INTERFACE_MS * Math.max(0, runningInterfaces);
}

/** Rough duration shown to users while libvirt rebuilds (the measured per-interface cost, rounded up). */
export function expectedRebuildSeconds(runningInterfaces: number): number {
  return Math.ceil(runningInterfaces * 5);
}
