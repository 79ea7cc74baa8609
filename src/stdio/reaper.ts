// Placeholder until the process layer lands.
export class OrphanReaper {
  static start(_options?: { graceMs?: number }): OrphanReaper {
    return new OrphanReaper();
  }
  watch(_pgid: number): void {}
  unwatch(_pgid: number): void {}
  close(): void {}
}
