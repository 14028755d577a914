/**
 * The least an HTTP endpoint can do with a heartbeat: a bare node:http server that reads the
 * body, parses it and answers a small JSON object (no framework, no authentication, no Redis).
 * The heartbeat bench drives it with the same generator as the API, to show what this machine
 * allows at all. Prints its URL on stdout.
 */
import { createServer } from 'node:http';

const server = createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk: string) => {
    body += chunk;
  });
  req.on('end', () => {
    JSON.parse(body);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address !== null && typeof address === 'object') process.stdout.write(`http://127.0.0.1:${address.port}\n`);
});
// It holds nothing worth a graceful close.
process.on('SIGTERM', () => process.exit(0));
