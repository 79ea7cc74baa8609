import { type LoadInput, loadConfig } from '../../src/config/load.js';
import { ConfigError, type ConfigProblem } from '../../src/config/types.js';

/** The problems loadConfig reports for `input`; none when it loads. */
export function configProblems(input: LoadInput): ConfigProblem[] {
  try {
    loadConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}
