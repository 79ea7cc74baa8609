import type { ErrorAnswer } from '../http/errors.js';
/** How an upstream failure is reported: HTTP status, a stable code and a sentence for humans. */
export interface UpstreamFailure {
  status: 502 | 503 | 504;
  code:
    | 'upstream_unavailable'
    | 'upstream_timeout'
    | 'upstream_reset'
    | 'upstream_error'
    | 'upstream_tls_error'
    | 'upstream_circuit_open'
    | 'upstream_response_unreadable';
  /** Metric outcome label. */
  outcome: 'refused' | 'timeout' | 'reset' | 'error' | 'breaker_open';
  description: string;
  /** The connection was never established, so no request byte reached the backend. */
  beforeConnect: boolean;
}

const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** Certificate verification failures Node reports for a TLS target. */
const CERT_FAILURES =
  /^(UNABLE_TO_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED|CERT_|ERR_TLS_CERT_ALTNAME_INVALID)/;

/** Why an edited response was refused, in the words the client reads. */
const UNEDITABLE: Record<string, string> = {
  compressed: 'was compressed',
  too_large: 'was larger than the proxy inspects',
  unparseable: 'was not valid JSON',
  editor_error: 'could not be checked',
};

export function classifyUpstreamError(err: unknown): UpstreamFailure {
  const code = (err as { code?: string }).code ?? '';
  if (code === 'PROXY_RESPONSE_UNEDITABLE') {
    // Fail closed: a response the proxy must filter but cannot read is never passed on as it is.
    const why = UNEDITABLE[(err as { reason?: string }).reason ?? ''] ?? 'could not be checked';
    return {
      status: 502,
      code: 'upstream_response_unreadable',
      outcome: 'error',
      description: `The MCP server's response ${why}, so the proxy did not pass it on.`,
      beforeConnect: false,
    };
  }
  if (CERT_FAILURES.test(code)) {
    return {
      status: 502,
      code: 'upstream_tls_error',
      outcome: 'error',
      description: `The MCP server's TLS certificate is not trusted (${code}); give its CA in PROXY_CA_FILE.`,
      beforeConnect: true,
    };
  }
  if (code.startsWith('ERR_SSL_')) {
    return {
      status: 502,
      code: 'upstream_tls_error',
      outcome: 'error',
      description: `The TLS handshake with the MCP server failed (${code}); check that the target speaks https.`,
      beforeConnect: true,
    };
  }
  if (CONNECT_FAILURES.has(code)) {
    return {
      status: 502,
      code: 'upstream_unavailable',
      outcome: 'refused',
      description: `The MCP server could not be reached (${code}).`,
      beforeConnect: true,
    };
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return {
      status: 504,
      code: 'upstream_timeout',
      outcome: 'timeout',
      description: 'Connecting to the MCP server timed out.',
      beforeConnect: true,
    };
  }
  if (
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'PROXY_IDLE_TIMEOUT'
  ) {
    return {
      status: 504,
      code: 'upstream_timeout',
      outcome: 'timeout',
      description:
        code === 'UND_ERR_HEADERS_TIMEOUT'
          ? 'The MCP server did not answer in time (PROXY_HEADERS_TIMEOUT).'
          : 'The MCP server stopped sending the response (PROXY_IDLE_TIMEOUT).',
      beforeConnect: false,
    };
  }
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') {
    return {
      status: 502,
      code: 'upstream_reset',
      outcome: 'reset',
      description: 'The MCP server closed the connection before answering.',
      beforeConnect: false,
    };
  }
  return {
    status: 502,
    code: 'upstream_error',
    outcome: 'error',
    description: `The request to the MCP server failed (${code || 'unknown error'}).`,
    beforeConnect: false,
  };
}

export function circuitOpenFailure(retryAfterMs: number): UpstreamFailure {
  return {
    status: 503,
    code: 'upstream_circuit_open',
    outcome: 'breaker_open',
    description: `The MCP server failed repeatedly; requests are paused for ${Math.ceil(retryAfterMs / 1000)} s (circuit breaker open).`,
    beforeConnect: true,
  };
}

/** How the proxy answers a client when the backend failed (a 502, 503 or 504 in the one error shape). */
export function failureAnswer(failure: UpstreamFailure, retryAfterMs = 0): ErrorAnswer {
  return {
    status: failure.status,
    error: failure.code,
    description: failure.description,
    headers: retryAfterMs > 0 ? [['retry-after', String(Math.ceil(retryAfterMs / 1000))]] : [],
  };
}
