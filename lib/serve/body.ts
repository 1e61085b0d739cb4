// A request's body read into one buffer within three limits: its own size (a LimitExceededError,
// 413), the bytes all uploads may hold at once (a BusyError, 503, before a byte is read when the
// client declares its length), and the time the client may leave between two pieces of it (408). A failed read stops reading; the
// bytes taken from the budget stay the request's until it ends (the server releases its share).
import type { IncomingMessage } from 'node:http';

import type { BudgetShare } from './byte_budget.js';
import { RequestError } from './request_error.js';
import { AbortedError, BadFileError, BusyError, LimitExceededError } from '../errors.js';

export interface BodyLimits {
  /** The largest body taken, in bytes. */
  maxBytes: number;
  /** This request's share of the server's upload budget. */
  share: BudgetShare;
  /** The budget's size, for the message of a refusal. */
  budgetBytes: number;
  /** The longest wait for the next piece of the body, in ms. */
  idleTimeoutMs: number;
}

/** The error of a client that hung up before its body ended: not answered (no one to answer). */
function hungUp(): Error {
  const error = new AbortedError('the client closed the connection before the body ended');
  error.name = 'AbortError';
  return error;
}

export function readBody(request: IncomingMessage, limits: BodyLimits): Promise<Buffer> {
  const { maxBytes, share, budgetBytes, idleTimeoutMs } = limits;
  const header = request.headers['content-length'];
  // (Node has checked that a content-length is digits; none means chunked or no body.)
  const declared = header === undefined ? undefined : Number(header);
  if (declared !== undefined && declared > maxBytes) return Promise.reject(new LimitExceededError(`the body is ${declared} bytes, more than the ${maxBytes} this server takes`));
  if (declared !== undefined && !share.grow(declared)) {
    return Promise.reject(new BusyError(`a body of ${declared} bytes does not fit in what is left of the ${budgetBytes} bytes all uploads in progress may hold: try again later`));
  }
  return new Promise<Buffer>((resolve, reject) => {
    // A declared length is read into one buffer of that size, not into pieces joined at the end
    // (which would hold the body twice); it is taken from the budget already.
    const whole = declared !== undefined ? Buffer.allocUnsafeSlow(declared) : null;
    const pieces: Buffer[] = [];
    let size = 0;
    const idle = setTimeout(() => fail(new RequestError(408, `no bytes of the body came for ${idleTimeoutMs} ms: send the body without pauses`)), idleTimeoutMs);
    const stop = () => {
      clearTimeout(idle);
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onError);
      request.off('close', onClose);
    };
    const fail = (error: Error) => {
      stop();
      pieces.length = 0;
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      idle.refresh();
      if (size + chunk.length > maxBytes) return fail(new LimitExceededError(`the body is more than the ${maxBytes} bytes this server takes`));
      if (whole) {
        chunk.copy(whole, size);
      } else {
        if (!share.grow(chunk.length)) return fail(new BusyError(`the body grew past what is left of the ${budgetBytes} bytes all uploads in progress may hold: try again later`));
        pieces.push(chunk);
      }
      size += chunk.length;
    };
    const onEnd = () => {
      stop();
      if (size === 0) return reject(new BadFileError('the body is empty: POST the bytes of an image file (JPEG, PNG, WebP, GIF, TIFF, AVIF or SVG)'));
      resolve(whole ? whole.subarray(0, size) : Buffer.concat(pieces, size));
    };
    const onError = () => fail(hungUp());
    const onClose = () => fail(hungUp());
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onError);
    request.on('close', onClose);
  });
}
