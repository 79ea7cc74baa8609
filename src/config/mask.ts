/** How secrets are kept out of error messages, log lines and `check-config` output. */
import type { SettingSpec } from './setting-spec.js';
import { SETTING_SPECS } from './settings.js';
import type { ConfigProblem } from './types.js';

/** What a secret's value is replaced by wherever it would be shown. */
export const SECRET_MASK = '********';

/** `redis://user:pass@host` -> `redis://user:********@host`. */
export function maskUrlPassword(url: string): string {
  return url.replace(/^([a-z+]+:\/\/[^:@/]*:)[^@/]*@/i, `$1${SECRET_MASK}@`);
}

/**
 * `scheme://user:password@host` -> `scheme://********@host`: the whole userinfo, since a token
 * is often given as the user name alone (`https://TOKEN@host`). Up to the last `@` before the
 * path, as URL parsers read it.
 */
export function maskUrlCredentials(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, `$1${SECRET_MASK}@`);
}

/**
 * A setting's text as it may be shown: a secret masked whole, a URL's credentials masked (URL
 * settings refuse credentials, but a refused value's `user:password@` is still never shown).
 */
export function shownValue(spec: SettingSpec, text: string): string {
  if (spec.secret && text) return SECRET_MASK;
  if (spec.maskUrlPassword) return maskUrlPassword(text);
  if (spec.kind === 'url') return maskUrlCredentials(text);
  return text;
}

/** A problem as it may be shown; its key is a setting's environment name or YAML key. */
export function maskProblem(problem: ConfigProblem): ConfigProblem {
  const spec = SETTING_SPECS.find((s) => s.env === problem.key || s.yaml === problem.key);
  return spec ? { ...problem, value: shownValue(spec, problem.value) } : problem;
}
