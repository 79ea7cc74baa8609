import { type DevIdp, type DevIdpOptions, startDevIdp } from '../../src/demo/dev-idp.js';
import { freePort, type Listening, startEchoBackend, startTestProxy, type TestProxy } from './servers.js';

export interface OidcStack {
  idp: DevIdp;
  backend: Listening;
  proxy: TestProxy;
  /** The proxy's public URL (http://127.0.0.1:PORT). */
  url: string;
  close(): Promise<void>;
}

export const CLIENT_ID = 'mcp-oidc-proxy';
export const CLIENT_SECRET = 'proxy-secret-for-tests-only';

/**
 * A real OIDC provider (the dev IdP), an echo backend and the proxy in oidc mode between
 * them. The proxy's port is chosen first so the IdP can register its exact callback URL.
 */
export async function startOidcStack(
  env: Record<string, string> = {},
  idpOptions: Partial<DevIdpOptions> = {},
  /** The backend behind the proxy; an echo backend when not given (closed with the stack). */
  startBackend: () => Promise<Listening> = startEchoBackend,
  /** A YAML file for the proxy too (`servers:`; then give PROXY_TARGET_URL: '' in `env`). */
  configFile?: string,
): Promise<OidcStack> {
  // The proxy's port is released between being chosen and being bound, and the IdP and the
  // backend bind port 0 in between: the kernel may hand one of them that very port. Then the
  // whole stack is built again on another one.
  for (let attempt = 1; ; attempt++) {
    try {
      return await buildOidcStack(env, idpOptions, startBackend, configFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === 3) throw err;
    }
  }
}

/** The dev IdP, with the proxy at `url` (its public URL) registered as its client. */
export function startIdpFor(url: string, idpOptions: Partial<DevIdpOptions> = {}): Promise<DevIdp> {
  return startDevIdp({
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [`${url}/callback`],
        post_logout_redirect_uris: [`${url}/logout`],
      },
    ],
    ...idpOptions,
  });
}

/** The settings of a proxy in oidc mode at `url` (port and public URL) logging users in at `idp`. */
export function oidcProxyEnv(idp: DevIdp, url: string): Record<string, string> {
  return {
    AUTH_MODE: 'oidc',
    SERVER_PORT: new URL(url).port,
    PUBLIC_URL: url,
    OIDC_DISCOVERY_URL: `${idp.issuer}/.well-known/openid-configuration`,
    OIDC_CLIENT_ID: CLIENT_ID,
    OIDC_CLIENT_SECRET: CLIENT_SECRET,
    OIDC_SCOPES: 'openid email profile groups offline_access',
  };
}

async function buildOidcStack(
  env: Record<string, string>,
  idpOptions: Partial<DevIdpOptions>,
  startBackend: () => Promise<Listening>,
  configFile: string | undefined,
): Promise<OidcStack> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const idp = await startIdpFor(url, idpOptions);
  const backend = await startBackend();
  let proxy: TestProxy;
  try {
    proxy = await startTestProxy(
      {
        ...oidcProxyEnv(idp, url),
        // A stdio server (PROXY_TARGET_COMMAND) replaces the backend, which then only idles.
        ...(env.PROXY_TARGET_COMMAND === undefined ? { PROXY_TARGET_URL: backend.url } : {}),
        ...env,
      },
      configFile,
    );
  } catch (err) {
    await backend.close();
    await idp.close();
    throw err;
  }
  return {
    idp,
    backend,
    proxy,
    url,
    close: async () => {
      await proxy.close();
      await backend.close();
      await idp.close();
    },
  };
}
