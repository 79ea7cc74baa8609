// Interface placeholder: response editing lands separately.
export interface ResponseEditor {
  message(message: Record<string, unknown>): Record<string, unknown> | undefined;
  end(outcome: 'complete' | 'failed', reason?: string): void;
}
