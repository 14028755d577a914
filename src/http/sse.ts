import type { Request, Response } from 'express';

/**
 * Answers a request with a server-sent event stream's headers. False for HEAD, which gets the
 * headers only and is ended here: a stream that never ends would never send them.
 */
export function openEventStream(req: Request, res: Response): boolean {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-cache',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no',
  });
  if (req.method === 'HEAD') {
    res.end();
    return false;
  }
  // Send the headers now, not with the first event: a client sees the stream open at once.
  res.flushHeaders();
  return true;
}
