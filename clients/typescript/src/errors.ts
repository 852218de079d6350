import { ErrorCodes, type ErrorCodeName } from "./generated/methods.js";

const NAMES = new Map<number, ErrorCodeName>(
  Object.entries(ErrorCodes).map(([name, code]) => [code, name as ErrorCodeName]),
);

/** An error the daemon (or the app-server behind it) answered a call with. */
export class RpcError extends Error {
  override readonly name = "RpcError";
  /** The JSON-RPC code, for example -32602. */
  readonly code: number;
  /** codexd's name for the code (`INVALID_PARAMS`, `ROLE_REQUIRED`, …) when it is one of its own. */
  readonly codeName: ErrorCodeName | undefined;
  readonly data: unknown;
  readonly method: string;

  constructor(method: string, code: number, message: string, data?: unknown) {
    super(`${method}: ${message} (${code})`);
    this.method = method;
    this.code = code;
    this.codeName = NAMES.get(code);
    this.data = data;
  }

  /** `err.is("ROLE_REQUIRED")`: a check that reads like the docs. */
  is(name: ErrorCodeName): boolean {
    return this.code === ErrorCodes[name];
  }
}

export type ClientErrorKind =
  /** The connection ended while the call was in flight; it may or may not have run. */
  | "connectionLost"
  /** The client was closed by `close()`. */
  | "closed"
  /** More was waiting to be sent than `maxQueuedBytes` allows; nothing was sent. */
  | "bufferFull"
  /** No answer within the call's `timeoutMs`. */
  | "timeout"
  /** The daemon refused the connection (HTTP 401/403: token, ticket, origin or host). */
  | "refused"
  /** The connection could not be opened. */
  | "unreachable";

/** A failure on this side of the wire: nothing the daemon said. */
export class ClientError extends Error {
  override readonly name = "ClientError";
  readonly kind: ClientErrorKind;

  constructor(kind: ClientErrorKind, message: string) {
    super(message);
    this.kind = kind;
  }
}
