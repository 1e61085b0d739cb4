// Stopping a server without dropping what its clients had sent: no new connections, every request
// that had reached the machine answered (Connection: close), idle keep-alive connections closed,
// and after a deadline whatever is left (a client sending its request a byte at a time) closed
// too, so that a stop never waits on a client.
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface DrainResult {
  /** Connections still open at the deadline, closed without an answer. */
  forced: number;
}

export interface Drainer {
  /** Called first for every request: answers given while draining close their connection. */
  admit(response: ServerResponse): void;
  /** Starts the drain (once; later calls get the same promise). */
  drain(timeoutMs: number): Promise<DrainResult>;
  readonly draining: boolean;
}

/**
 * Event-loop turns to let pass before the listening socket closes: connections the kernel had
 * queued before the drain began are accepted in the first, their bytes read in the next (a
 * request whose reading has begun is no longer idle). Closing at once would reset them, with
 * their requests unanswered.
 */
const SETTLE_TURNS = 3;

function eventLoopTurns(turns: number): Promise<void> {
  return new Promise((resolve) => {
    const next = (left: number) => (left === 0 ? resolve() : setImmediate(() => next(left - 1)));
    next(turns);
  });
}

export function drainerFor(server: Server): Drainer {
  const sockets = new Set<Socket>();
  const answering = new Set<ServerResponse>();
  let drained: Promise<DrainResult> | null = null;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  async function run(timeoutMs: number): Promise<DrainResult> {
    // Answers not begun yet tell their clients that the connection ends with them.
    for (const response of answering) if (!response.headersSent) response.shouldKeepAlive = false;
    await eventLoopTurns(SETTLE_TURNS);
    // http.Server.close stops listening and closes the connections with no request begun;
    // its callback comes once every connection has ended.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), timeoutMs)));
    const outcome = await Promise.race([closed.then(() => 'closed' as const), deadline]);
    clearTimeout(timer);
    if (outcome === 'closed') return { forced: 0 };
    const forced = sockets.size;
    for (const socket of sockets) socket.destroy();
    await closed;
    return { forced };
  }

  return {
    admit(response) {
      answering.add(response);
      if (drained) response.shouldKeepAlive = false;
      response.once('close', () => {
        answering.delete(response);
        // A keep-alive connection whose answer began before the drain is idle now: closed too.
        if (drained) server.closeIdleConnections();
      });
    },
    drain(timeoutMs) {
      if (!(Number.isFinite(timeoutMs) && timeoutMs >= 0)) return Promise.reject(new RangeError(`drain: the timeout is ${JSON.stringify(timeoutMs)} ms, expected a finite number of ms, 0 or more`));
      drained ??= run(timeoutMs);
      return drained;
    },
    get draining() {
      return drained !== null;
    },
  };
}
