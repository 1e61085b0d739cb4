// AbortSignal for a model's reads (predict, embed, classify, the batcher), as fetch and fs take
// one: a service stops work for a client that went away. Aborted before it starts, the work never
// runs; aborted while it runs (a native pass cannot be stopped half way), the caller's promise
// rejects at once with the signal's reason (see abortReason), and the result is disposed when it arrives.

import { AbortedError, InvalidArgTypeError } from '../errors.js';

/** The options of a call that can be abandoned. */
export interface AbortOptions {
  /** Aborting it rejects the call with an AbortError (ERR_CASTLING_ABORTED), or with the reason given to abort(reason): see abortReason. */
  signal?: AbortSignal;
}

/** The signal of `options`, checked: an AbortSignal or nothing. */
export function signalOf(options: AbortOptions | undefined, what: string): AbortSignal | undefined {
  const signal = options?.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidArgTypeError(`${what}: options.signal must be an AbortSignal`);
  return signal;
}

/**
 * What a call aborted by `signal` rejects with. The signal's own reason (abort() with none: a
 * DOMException named 'AbortError') becomes an AbortedError of the same name and message, with the
 * code ERR_CASTLING_ABORTED and that reason as its cause; a reason the caller gave is theirs and
 * is rejected with as it is.
 */
export function abortReason(signal: AbortSignal): unknown {
  const reason: unknown = signal.reason;
  if (reason instanceof DOMException && reason.name === 'AbortError') return new AbortedError(reason.message, { cause: reason });
  return reason;
}

/**
 * `work`'s outcome, or a rejection with abortReason(signal) as soon as it aborts; a value that
 * arrives after that goes to `discard` (to dispose a tensor nobody will receive).
 */
export function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined, discard?: (value: T) => void): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) discard?.(value);
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error); // (nothing when the abort came first)
      },
    );
  });
}

/** Disposes a tensor result nobody will receive. */
export function disposeTensor(value: { dispose(): void }): void {
  value.dispose();
}
