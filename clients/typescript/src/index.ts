// @codexd/client: works in browsers and Node (for the Unix socket, import "@codexd/client/node").
export { Client } from "./client.js";
export type { CallOptions, ClientOptions, ReconnectOptions, Resumed, ServerRequestHandler, State } from "./client.js";
export { ClientError, RpcError } from "./errors.js";
export type { ClientErrorKind } from "./errors.js";
export { webSocket } from "./transport.js";
export type { CloseInfo, Connector, Transport, WebSocketOptions } from "./transport.js";
export * from "./types.js";
