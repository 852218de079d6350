// The typed surface: codexd's own protocol over the app-server's, both generated.
import type { AppServerMethods, AppServerNotifications, AppServerRequests } from "./generated/appserver-methods.js";
import type { CodexdMethods, CodexdNotifications } from "./generated/methods.js";

export type * from "./generated/codexd.js";
export type { AppServerMethods, AppServerNotifications, AppServerRequests, CodexdMethods, CodexdNotifications };
export { ErrorCodes, MethodRoles, PROTOCOL_VERSION } from "./generated/methods.js";
export type { ErrorCodeName } from "./generated/methods.js";
export { APP_SERVER_VERSION } from "./generated/appserver-methods.js";

/** Every method a client may call on codexd: its own, and the app-server's it forwards. */
export type Methods = Omit<AppServerMethods, keyof CodexdMethods> & CodexdMethods;
export type Method = keyof Methods & string;
export type ParamsOf<M extends Method> = Methods[M]["params"];
export type ResultOf<M extends Method> = Methods[M]["result"];

/** Every notification codexd sends: its own and the app-server's. */
export type Notifications = Omit<AppServerNotifications, keyof CodexdNotifications> & CodexdNotifications;
export type NotificationMethod = keyof Notifications & string;

/** One notification as received: `seq` and `epoch` on every one but per-attachment streams. */
export interface Notification<N extends string = string> {
  method: N;
  params: N extends NotificationMethod ? Notifications[N] : unknown;
  seq?: number;
  epoch?: string;
}

export type ServerRequestMethod = keyof AppServerRequests & string;

/** A request the daemon sends to this client (an approval, a question), by its approval id. */
export interface ServerRequest<M extends string = string> {
  id: number | string;
  method: M;
  params: M extends ServerRequestMethod ? AppServerRequests[M]["params"] : unknown;
}

export type ServerRequestResult<M extends string> = M extends ServerRequestMethod
  ? AppServerRequests[M]["result"] : unknown;
