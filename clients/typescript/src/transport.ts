// Transports carry one JSON-RPC message per unit: a WebSocket text frame, or one NDJSON line.

/** Why a transport ended. */
export interface CloseInfo {
  /** The daemon refused the connection before it opened (HTTP 401/403): do not retry blindly. */
  refused?: boolean;
  reason: string;
}

/** An open connection. The client sets the three handlers right after it is opened. */
export interface Transport {
  send(text: string): void;
  /** Bytes accepted by send() and not yet written to the network. */
  readonly buffered: number;
  onmessage: (text: string) => void;
  onclose: (info: CloseInfo) => void;
  /** Called when `buffered` fell after being high (may be called spuriously). */
  ondrain: () => void;
  close(): void;
}

/** Opens a new transport: called at start and again for every reconnect. */
export type Connector = () => Promise<Transport>;

export interface WebSocketOptions {
  /** A token (sent as `Authorization: Bearer`, where the platform allows headers: Node). */
  token?: string;
  /**
   * A one-time connect ticket for each attempt (browsers cannot set headers): called before
   * every connect. In the web console the session cookie is used instead and this is unset.
   */
  ticket?: () => Promise<string> | string;
  /** The WebSocket constructor (defaults to the global one: browsers, Node >= 22, Node 20 with --experimental-websocket). */
  WebSocket?: typeof WebSocket;
  /** How long the opening handshake may take (default 10 s). */
  openTimeoutMs?: number;
}

const DRAIN_POLL_MS = 20;

/** A timer that never keeps a Node process alive by itself (browsers have no unref). */
function later(fn: () => void): void {
  const t = setTimeout(fn, DRAIN_POLL_MS) as { unref?: () => void };
  t.unref?.();
}

/** A connector for codexd's WebSocket listener (`ws://127.0.0.1:4870/` by default). */
export function webSocket(url: string, options: WebSocketOptions = {}): Connector {
  const Ctor = options.WebSocket ?? globalThis.WebSocket;
  if (typeof Ctor !== "function") {
    throw new TypeError("no WebSocket here: run Node 22+, or Node 20 with --experimental-websocket");
  }
  return async () => {
    let target = url;
    if (options.ticket) {
      const u = new URL(url);
      u.searchParams.set("ticket", await options.ticket());
      target = u.toString();
    }
    // Node's WebSocket takes headers in a second argument; a browser ignores what it cannot use.
    const init = options.token ? { headers: { Authorization: `Bearer ${options.token}` } } : undefined;
    const ws = init ? new (Ctor as unknown as new (u: string, i: object) => WebSocket)(target, init)
      : new Ctor(target);
    try {
      return await opened(ws, options.openTimeoutMs ?? 10_000);
    } catch (err) {
      // The WebSocket API hides a refused upgrade's status: ask /whoami with the same
      // credential (a ticket is used up by the attempt, so only for tokens and cookies).
      const reason = options.ticket ? undefined : await refusal(url, options.token);
      if (reason !== undefined) throw Object.assign(new Error(reason), { refused: true });
      throw err;
    }
  };
}

/** Why the daemon refuses this credential, or undefined when it does not (or cannot say). */
async function refusal(url: string, token: string | undefined): Promise<string | undefined> {
  if (typeof fetch !== "function") return undefined;
  const u = new URL(url);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.pathname = "/whoami";
  u.search = "";
  try {
    const resp = await fetch(u, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
      credentials: "same-origin",
      signal: AbortSignal.timeout(5000),
    });
    if (resp.status !== 401 && resp.status !== 403) return undefined;
    const text = await resp.text();
    try {
      return (JSON.parse(text) as { error?: string }).error ?? text.trim();
    } catch {
      return text.trim();
    }
  } catch {
    return undefined;
  }
}

function opened(ws: WebSocket, timeoutMs: number): Promise<Transport> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error(`the WebSocket did not open within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.onerror = (ev: Event) => {
      clearTimeout(timer);
      // Browsers hide the HTTP status of a refused upgrade; Node puts it in the message.
      const message = (ev as Event & { message?: string }).message ?? "connection failed";
      reject(Object.assign(new Error(message), { refused: /\b40[13]\b/.test(message) }));
    };
    ws.onopen = () => {
      clearTimeout(timer);
      resolve(new WebSocketTransport(ws));
    };
  });
}

class WebSocketTransport implements Transport {
  onmessage: (text: string) => void = () => {};
  onclose: (info: CloseInfo) => void = () => {};
  ondrain: () => void = () => {};
  private polling = false;
  private closed = false;

  constructor(private readonly ws: WebSocket) {
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data === "string") this.onmessage(ev.data);
    };
    ws.onerror = () => {};
    ws.onclose = (ev: CloseEvent) => {
      this.closed = true;
      this.onclose({ reason: ev.reason || `closed (${ev.code})` });
    };
  }

  get buffered(): number {
    return this.ws.bufferedAmount;
  }

  send(text: string): void {
    this.ws.send(text);
    if (!this.polling && this.ws.bufferedAmount > 0) this.poll();
  }

  // WebSocket has no drain event: watch bufferedAmount while anything is buffered.
  private poll(): void {
    this.polling = true;
    const tick = (): void => {
      if (this.closed || this.ws.readyState !== 1) {
        this.polling = false;
        return;
      }
      if (this.ws.bufferedAmount === 0) {
        this.polling = false;
        this.ondrain();
        return;
      }
      this.ondrain();
      later(tick);
    };
    later(tick);
  }

  close(): void {
    this.closed = true;
    this.ws.close(1000);
  }
}
