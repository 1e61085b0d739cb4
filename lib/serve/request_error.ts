// An answer that is the client's doing (or the server's refusal to take more): its status, its
// message and any headers it needs (Retry-After).
export class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}
