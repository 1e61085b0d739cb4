// An answer of HTTP's own (404, 405, 408, a target that is not a path) or an error of
// castling-vit's told in the request's terms: its status, its message, any headers it needs
// (Retry-After) and, for the latter, the error's code. Other errors get their status from
// error_status.ts.
export class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly code?: string,
  ) {
    super(message);
  }
}
