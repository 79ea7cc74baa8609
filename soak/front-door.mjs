// The proxies' public address (PUBLIC_URL) in the soak: a TCP balancer on loopback, round-robin over the
// instances, trying the next one when a connection is refused (an instance that was killed), as a load
// balancer in front of several instances would. Browser logins, registration and token refreshes go
// through it; the soak's streams and calls address the instances directly, to choose where they land.
import net from 'node:net';

export function startFrontDoor(port, instancePorts) {
  let next = 0;
  const sockets = new Set();
  const connectUpstream = (client, attempt) => {
    if (attempt >= instancePorts.length) return client.destroy();
    const target = instancePorts[next++ % instancePorts.length];
    const upstream = net.connect(target, '127.0.0.1');
    sockets.add(upstream);
    upstream.once('close', () => sockets.delete(upstream));
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      client.pipe(upstream).pipe(client);
      client.resume();
      upstream.once('close', () => client.destroy());
      client.once('close', () => upstream.destroy());
    });
    upstream.on('error', (error) => {
      if (!connected && error.code === 'ECONNREFUSED') connectUpstream(client, attempt + 1);
      else client.destroy();
    });
  };
  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    client.on('error', () => {});
    connectUpstream(client, 0);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () =>
      resolve({
        port,
        close: () =>
          new Promise((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      }),
    );
  });
}
