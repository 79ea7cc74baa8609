/**
 * STDIO_MAX_PROCESSES: children alive at once across every stdio server of the proxy. One budget
 * is shared by every bridge, so one busy server can use what the others leave free.
 */
export class ProcessBudget {
  private used = 0;

  /** Settable: a reload may change the cap; children over a lowered cap stay until they end. */
  constructor(public max: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Takes a slot if one is free; false (and nothing taken) at the cap. */
  tryAcquire(): boolean {
    if (this.used >= this.max) return false;
    this.used++;
    return true;
  }

  release(): void {
    if (this.used > 0) this.used--;
  }
}
