// The HTTP status of each error code (the table of docs/errors.md, in one place): the client's
// input is 4xx, a refusal for now is 503 with Retry-After, a fault of the model or of the server
// is 500. An aborted request gets no answer: its client has gone.
import { ErrorCodes, errorCode, type ErrorCode } from '../errors.js';

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
}

const STATUS_OF_CODE: Record<ErrorCode, number | null> = {
  [ErrorCodes.INVALID_ARG_TYPE]: 400,
  [ErrorCodes.INVALID_ARG_VALUE]: 400,
  [ErrorCodes.LIMIT_EXCEEDED]: 413,
  [ErrorCodes.BAD_FILE]: 400,
  [ErrorCodes.INVALID_STATE]: 500,
  [ErrorCodes.DISPOSED]: 503,
  [ErrorCodes.BUSY]: 503,
  [ErrorCodes.ABORTED]: null,
  [ErrorCodes.UNSUPPORTED]: 500,
  [ErrorCodes.OUT_OF_MEMORY]: 503,
  [ErrorCodes.NON_FINITE_OUTPUT]: 500,
  [ErrorCodes.INTERNAL]: 500,
};

/** Codes whose refusal is for now: the client may send the same request again after a pause. */
const RETRY_LATER: ReadonlySet<string> = new Set([ErrorCodes.BUSY, ErrorCodes.OUT_OF_MEMORY]);

/**
 * The answer to a request that failed with `error`; null when there is nobody to answer (the
 * client hung up). An error without one of castling-vit's codes is `fallback`.
 */
export function answerOf(error: unknown, fallback = 500): HttpAnswer | null {
  const code = errorCode(error);
  if (code === undefined || !(code in STATUS_OF_CODE)) return { status: fallback, headers: {} };
  const status = STATUS_OF_CODE[code as ErrorCode];
  if (status === null) return null;
  return { status, headers: RETRY_LATER.has(code) ? { 'retry-after': '1' } : {} };
}
