import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { DevIdp } from '../../src/demo/dev-idp.js';
import { oidcProxyEnv, startIdpFor } from './oidc-stack.js';
import { onFreshPorts } from './ports.js';
import { startTestProxy, type TestProxy, testProxyConfig } from './servers.js';

/** One entry of the YAML `servers:` list, as an operator writes it. */
export interface ServerYaml {
  name: string;
  path: string;
  url?: string;
  command?: string[];
  isolation?: 'session' | 'user';
  allowed_emails?: string[];
  allowed_domains?: string[];
  allowed_groups?: string[];
  mcp_access?: unknown;
}

/** The stdio probe server (test/helpers/stdio-probe-server.mjs) as a `command:`. */
export const PROBE_COMMAND = [process.execPath, resolve('test/helpers/stdio-probe-server.mjs')];

/** A proxy started from a YAML file with `servers:` (and env-style settings for the rest). */
export interface ServersProxy {
  proxy: TestProxy;
  url: string;
  /** The --config file's path. */
  file: string;
  /**
   * Rewrites the file with `servers` and reloads it (what SIGHUP does). The servers change in
   * the background: wait for the effect, not for this call.
   */
  reload(servers: ServerYaml[]): void;
  close(): Promise<void>;
}

/**
 * Writes `servers:` to a YAML file in a fresh directory, as an editor would (aside, then renamed
 * into place), and starts the proxy with `--config` that file; bypass mode unless `env` says
 * otherwise.
 */
export async function startServersProxy(
  servers: ServerYaml[],
  env: Record<string, string> = {},
): Promise<ServersProxy> {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-servers-'));
  const file = join(dir, 'proxy.yaml');
  const write = (list: ServerYaml[]): void => {
    writeFileSync(`${file}.tmp`, stringify({ servers: list }));
    renameSync(`${file}.tmp`, file);
  };
  write(servers);
  let proxy: TestProxy;
  try {
    proxy = await startTestProxy(env, file);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    proxy,
    url: proxy.url,
    file,
    reload: (list) => {
      write(list);
      proxy.proxy.reload(testProxyConfig(env, file));
    },
    close: async () => {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The dev IdP and a proxy in oidc mode in front of `servers:`. */
export interface ServersOidcStack extends ServersProxy {
  idp: DevIdp;
}

/**
 * `servers:` behind one login: the dev IdP, and the proxy in oidc mode on a port chosen first
 * (the IdP registers its exact callback URL).
 */
export function startServersOidcStack(
  servers: ServerYaml[],
  env: Record<string, string> = {},
): Promise<ServersOidcStack> {
  return onFreshPorts(1, async ([port]) => {
    const url = `http://127.0.0.1:${port}`;
    const idp = await startIdpFor(url);
    let started: ServersProxy;
    try {
      started = await startServersProxy(servers, { ...oidcProxyEnv(idp, url), ...env });
    } catch (err) {
      await idp.close();
      throw err;
    }
    return {
      ...started,
      idp,
      close: async () => {
        await started.close();
        await idp.close();
      },
    };
  });
}
