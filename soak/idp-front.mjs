// The IdP's address in the soak: an HTTP relay in front of the dev IdP (whose issuer URL names the relay),
// so the slow-IdP fault can hold the token endpoint back (`delayMs()`), as a struggling IdP would.
import http from 'node:http';

export function startIdpFront(port, { target, delayMs }) {
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const relay = () => {
      const upstream = http.request(
        { host: '127.0.0.1', port: target(), method: req.method, path: req.url, headers: req.headers, agent },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    const delay = req.method === 'POST' && req.url?.startsWith('/token') ? delayMs() : 0;
    if (delay > 0) setTimeout(relay, delay);
    else relay();
  });
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () =>
      resolve({
        close: () =>
          new Promise((done) => {
            agent.destroy();
            server.closeAllConnections();
            server.close(() => done());
          }),
      }),
    );
  });
}
