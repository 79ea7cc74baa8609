// Placeholder until the stdio bridge lands.
export class ProcessBudget {
  inUse = 0;
  constructor(public max: number) {}
  tryAcquire(): boolean {
    return false;
  }
  release(): void {}
}
