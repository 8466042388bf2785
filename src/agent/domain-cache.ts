import type { AgentLibvirt, DomainInfo } from './libvirt-port.js';

/**
 * The domains of this node, as last listed from libvirt, by UUID and by name.
 *
 * A refresh requested while a listing is in flight never joins it: that listing may have been
 * answered before the domain that triggered the request existed. Instead every caller waits for a
 * listing that *started* after its request (refreshes requested meanwhile share one such listing),
 * so an event is never lost between two listings.
 */
export class DomainCache {
  private byUuid = new Map<string, DomainInfo>();
  private byName = new Map<string, DomainInfo>();
  private requested = 0;
  private completed = 0;
  private running: Promise<void> | undefined;
  private loadedOnce = false;

  constructor(private readonly libvirt: Pick<AgentLibvirt, 'listDomains'>) {}

  get loaded(): boolean {
    return this.loadedOnce;
  }

  /** Resolves once a listing that started after this call has completed; rejects if it failed. */
  async refresh(): Promise<void> {
    const wanted = ++this.requested;
    while (this.completed < wanted) {
      this.running ??= this.listOnce();
      await this.running;
    }
  }

  private async listOnce(): Promise<void> {
    const generation = this.requested;
    try {
      const list = await this.libvirt.listDomains();
      this.byUuid = new Map(list.map((d) => [d.uuid.toLowerCase(), d]));
      this.byName = new Map(list.map((d) => [d.name, d]));
      this.completed = Math.max(this.completed, generation);
      this.loadedOnce = true;
    } finally {
      this.running = undefined;
    }
  }

  /** The domain a VMFilter's `spec.domain` names (by UUID when given, else by name). */
  find(ref: { name?: string | undefined; uuid?: string | undefined } | undefined): DomainInfo | undefined {
    if (!ref) return undefined;
    if (typeof ref.uuid === 'string' && ref.uuid) return this.byUuid.get(ref.uuid.toLowerCase());
    return typeof ref.name === 'string' ? this.byName.get(ref.name) : undefined;
  }

  get(uuid: string): DomainInfo | undefined {
    return this.byUuid.get(uuid.toLowerCase());
  }

  all(): DomainInfo[] {
    return [...this.byUuid.values()];
  }
}
