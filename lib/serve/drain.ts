// Stopping a server without dropping what its clients had sent: no new connections, every request
// that had reached the machine answered (Connection: close), idle keep-alive connections closed,
// and after a deadline whatever is left (a client sending its request a byte at a time) closed
// too, so that a stop never waits on a client.
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { InvalidArgValueError } from '../errors.js';

export interface DrainResult {
  /** Connections still open at the deadline, closed without an answer. */
  forced: number;
}

export interface Drainer {
  /** Called first for every request: answers given while draining close their connection. */
  admit(response: ServerResponse): void;
  /** Starts the drain (once; later calls get the same promise), closing what is left after timeoutMs. */
  drain(timeoutMs: number): Promise<DrainResult>;
}

/** One turn of the event loop: a poll for I/O (accepts and reads) comes before it resolves. */
function eventLoopTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Waits until the connections the kernel had queued are accepted, and their first bytes read (a
 * request whose reading has begun is no longer idle, and http.Server.close spares it). Closing the
 * listening socket at once would reset them, with their requests unanswered. Node accepts one
 * queued connection per turn of the event loop, so the queue is empty once turns pass without
 * one; `limitMs` bounds the wait should new clients keep coming.
 */
async function acceptQueued(server: Server, limitMs: number): Promise<void> {
  let accepted = 0;
  const count = () => accepted++;
  server.on('connection', count);
  const start = Date.now();
  for (let quietTurns = 0; quietTurns < QUIET_TURNS && Date.now() - start < limitMs; ) {
    const before = accepted;
    await eventLoopTurn();
    quietTurns = accepted === before ? quietTurns + 1 : 0;
  }
  server.off('connection', count);
  // The last connection accepted is read in the next turn.
  for (let i = 0; i < QUIET_TURNS; i++) await eventLoopTurn();
}

/** Turns without a new connection taken to mean that none is queued (one would come each turn). */
const QUIET_TURNS = 3;

/** The longest wait for queued connections: a stop is not held up by a stream of new ones. */
const ACCEPT_LIMIT_MS = 1000;

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
    const started = Date.now();
    await acceptQueued(server, Math.min(ACCEPT_LIMIT_MS, timeoutMs / 2));
    // http.Server.close stops listening and closes the connections with no request begun;
    // its callback comes once every connection has ended.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), Math.max(0, started + timeoutMs - Date.now()))));
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
      if (!(Number.isFinite(timeoutMs) && timeoutMs >= 0)) return Promise.reject(new InvalidArgValueError(`drain: the timeout is ${JSON.stringify(timeoutMs)} ms, expected a finite number of ms, 0 or more`));
      drained ??= run(timeoutMs);
      return drained;
    },
  };
}
