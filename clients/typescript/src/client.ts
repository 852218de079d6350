// The codexd client: one typed call(), typed notifications, answers to server requests, and a
// reconnect that resumes from the last seq so no notification is lost or delivered twice.
import { ClientError, RpcError } from "./errors.js";
import type { CloseInfo, Connector, Transport } from "./transport.js";
import type {
  InitializeResult,
  Method,
  Notification,
  NotificationMethod,
  Notifications,
  ParamsOf,
  ResultOf,
  ServerRequest,
} from "./types.js";

export type State = "connecting" | "open" | "reconnecting" | "closed";

export interface ReconnectOptions {
  /** First wait after a drop (default 250 ms); doubles up to maxDelayMs, with jitter. */
  initialDelayMs?: number;
  /** Longest wait between attempts (default 10 s). */
  maxDelayMs?: number;
  /** Give up after this many failed attempts in a row (default: never). */
  maxAttempts?: number;
}

/**
 * Answers a server request (an approval, a question). Return the result its method expects,
 * for approvals `{ decision: "accept" | "acceptForSession" | "decline" | "cancel" }`; return
 * `undefined` to leave it pending for another client or for later (`approval/respond`).
 */
export type ServerRequestHandler = (request: ServerRequest) => unknown;

export interface ClientOptions {
  /** How to open a connection: `webSocket(url, …)`, or `unixSocket(path)` from "@codexd/client/node". */
  connect: Connector;
  clientInfo?: { name: string; version?: string; title?: string };
  /** When set, the client declares `capabilities.serverRequests` and answers with this. */
  onServerRequest?: ServerRequestHandler;
  /** Reconnect after a drop (default on). `false`: a drop closes the client. */
  reconnect?: boolean | ReconnectOptions;
  /** Bytes the transport may hold unsent before the client queues instead (default 1 MiB). */
  highWaterBytes?: number;
  /** Bytes the client queues (while reconnecting or above high water) before send fails with `bufferFull` (default 8 MiB). */
  maxQueuedBytes?: number;
  /** Live notifications held while catching up after a reconnect (default 10,000; more are re-read). */
  maxHeldNotifications?: number;
  /** A `daemon/health` probe this often; no answer within half of it drops the connection (default 30 s, 0 = off). */
  heartbeatMs?: number;
  /** Default timeout of every call (default: none). */
  callTimeoutMs?: number;
  /** Where a listener's or handler's exception goes (default console.error); it ends nothing. */
  onError?: (error: unknown) => void;
}

export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** What a reconnect found: `gap` means notifications were lost (another daemon run, or too old): re-read state. */
export interface Resumed {
  gap: boolean;
  replayed: number;
  epoch: string;
}

type Args<M extends Method> = undefined extends ParamsOf<M>
  ? [params?: ParamsOf<M>, options?: CallOptions]
  : {} extends ParamsOf<M> ? [params?: ParamsOf<M>, options?: CallOptions]
    : [params: ParamsOf<M>, options?: CallOptions];

/** `M` when it is not one of `Known` (so a known name always takes the typed overload). */
type Unknown<M extends string, Known extends string> = M extends Known ? never : M;

interface Pending {
  method: string;
  params: unknown;
  resolve: (value: unknown) => void;
  reject: (reason: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface Message {
  id?: number | string | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
  seq?: number;
  epoch?: string;
}

type Listener = (params: never, note: Notification) => void;

/** Answers remembered to send again when a reconnect lost them. */
const ANSWERS_KEPT = 1000;
const THREAD_OPENERS = new Set(["thread/start", "thread/resume", "thread/fork", "thread/read"]);

export class Client {
  /** The daemon's `initialize` result on the current connection. */
  server: InitializeResult | undefined;
  private transport: Transport | undefined;
  private state_: State = "connecting";
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly outbox: string[] = [];
  private outboxBytes = 0;
  private epoch: string | undefined;
  private lastSeq = 0;
  private catchUpFrom: number | undefined;
  private held = new Map<number, Message>();
  private readonly threads = new Set<string>();
  private allThreads = false;
  private readonly runs = new Set<string>();
  private allRuns = false;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly anyListeners = new Set<(note: Notification) => void>();
  private readonly stateListeners = new Set<(state: State, detail?: Error) => void>();
  private readonly resumeListeners = new Set<(info: Resumed) => void>();
  private readonly answering = new Map<number | string, Promise<void>>();
  private readonly answered = new Map<number | string, unknown>();
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private readonly options: Required<Omit<ClientOptions, "onServerRequest" | "clientInfo" | "reconnect" | "onError">>
    & Pick<ClientOptions, "onServerRequest" | "clientInfo" | "onError"> & { reconnect: ReconnectOptions | false };

  private constructor(options: ClientOptions) {
    this.options = {
      connect: options.connect,
      clientInfo: options.clientInfo,
      onServerRequest: options.onServerRequest,
      onError: options.onError,
      reconnect: options.reconnect === false ? false
        : options.reconnect === true || options.reconnect === undefined ? {} : options.reconnect,
      highWaterBytes: options.highWaterBytes ?? 1 << 20,
      maxQueuedBytes: options.maxQueuedBytes ?? 8 << 20,
      maxHeldNotifications: options.maxHeldNotifications ?? 10_000,
      heartbeatMs: options.heartbeatMs ?? 30_000,
      callTimeoutMs: options.callTimeoutMs ?? 0,
    };
  }

  /** Connects and initializes; rejects with `ClientError` (`refused`, `unreachable`) or `RpcError`. */
  static async connect(options: ClientOptions): Promise<Client> {
    const client = new Client(options);
    await client.open(false);
    return client;
  }

  get state(): State {
    return this.state_;
  }

  /** The last notification seq delivered (with `epoch`, what a reconnect resumes from). */
  get position(): { epoch: string | undefined; seq: number } {
    return { epoch: this.epoch, seq: this.lastSeq };
  }

  /** Calls a method; rejects with `RpcError` (the daemon's answer) or `ClientError`. */
  call<M extends Method>(method: M, ...args: Args<M>): Promise<ResultOf<M>>;
  /** A method no schema here knows (a newer daemon or app-server): untyped. */
  call<M extends string>(method: Unknown<M, Method>, params?: unknown, options?: CallOptions): Promise<unknown>;
  call(method: string, params?: unknown, options: CallOptions = {}): Promise<unknown> {
    if (this.state_ === "closed") return Promise.reject(new ClientError("closed", "the client is closed"));
    const id = this.nextId++;
    const text = JSON.stringify(params === undefined ? { jsonrpc: "2.0", id, method }
      : { jsonrpc: "2.0", id, method, params });
    return new Promise((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? this.options.callTimeoutMs;
      const entry: Pending = { method, params, resolve, reject, timer: undefined };
      if (timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new ClientError("timeout", `${method}: no answer within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      if (options.signal) {
        if (options.signal.aborted) return reject(options.signal.reason as Error);
        options.signal.addEventListener("abort", () => {
          if (this.pending.delete(id)) {
            clearTimeout(entry.timer);
            reject(options.signal?.reason as Error);
          }
        }, { once: true });
      }
      try {
        this.enqueue(text);
      } catch (err) {
        clearTimeout(entry.timer);
        return reject(err as Error);
      }
      this.pending.set(id, entry);
    });
  }

  /** Sends a notification (no answer). */
  notify(method: string, params?: unknown): void {
    this.enqueue(JSON.stringify(params === undefined ? { jsonrpc: "2.0", method } : { jsonrpc: "2.0", method, params }));
  }

  /** Listens to one notification; returns a function that stops listening. */
  on<N extends NotificationMethod>(method: N, listener: (params: Notifications[N], note: Notification<N>) => void): () => void;
  on<N extends string>(method: Unknown<N, NotificationMethod>, listener: (params: unknown, note: Notification) => void): () => void;
  on(method: string, listener: (params: never, note: Notification) => void): () => void {
    let set = this.listeners.get(method);
    if (!set) this.listeners.set(method, (set = new Set()));
    set.add(listener as Listener);
    return () => set.delete(listener as Listener);
  }

  /** Every notification, in order. */
  onNotification(listener: (note: Notification) => void): () => void {
    this.anyListeners.add(listener);
    return () => this.anyListeners.delete(listener);
  }

  /** Connection state changes: open, reconnecting (with the error), closed. */
  onState(listener: (state: State, detail?: Error) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /** After each reconnect: whether notifications were lost (`gap`: re-read state), how many were replayed. */
  onResume(listener: (info: Resumed) => void): () => void {
    this.resumeListeners.add(listener);
    return () => this.resumeListeners.delete(listener);
  }

  /** Closes the connection for good; calls in flight fail with `closed`. */
  close(): void {
    if (this.state_ === "closed") return;
    this.setState("closed");
    this.stopHeartbeat();
    this.transport?.close();
    this.transport = undefined;
    this.failPending(new ClientError("closed", "the client is closed"));
    this.outbox.length = 0;
    this.outboxBytes = 0;
  }

  // ------------------------------------------------------------------ connection

  private isClosed(): boolean {
    return this.state_ === "closed";
  }

  private setState(state: State, detail?: Error): void {
    if (this.state_ === "closed" || (this.state_ === state && !detail)) return; // closed is final
    this.state_ = state;
    for (const l of this.stateListeners) l(state, detail);
  }

  private async open(resuming: boolean): Promise<void> {
    let transport: Transport;
    try {
      transport = await this.options.connect();
    } catch (err) {
      const e = err as Error & { refused?: boolean };
      throw new ClientError(e.refused ? "refused" : "unreachable", `cannot connect to codexd: ${e.message}`);
    }
    if (this.state_ === "closed") {
      transport.close();
      return;
    }
    this.transport = transport;
    transport.onmessage = (text) => this.receive(text);
    transport.onclose = (info) => this.dropped(transport, info);
    transport.ondrain = () => this.flush();
    const params: Record<string, unknown> = {
      clientInfo: this.options.clientInfo ?? { name: "codexd-ts" },
      capabilities: this.options.onServerRequest ? { serverRequests: true } : {},
    };
    if (resuming && this.epoch !== undefined) {
      Object.assign(params, {
        epoch: this.epoch, afterSeq: this.lastSeq,
        threadIds: [...this.threads], allThreads: this.allThreads,
        runIds: [...this.runs], allRuns: this.allRuns,
      });
    }
    let result: InitializeResult;
    try {
      result = await this.direct<InitializeResult>("initialize", params);
    } catch (err) {
      transport.close();
      throw err;
    }
    if (this.isClosed()) return; // close() while the handshake was under way
    const gap = resuming && (result.replay?.gap === true || result.epoch !== this.epoch);
    if (result.epoch !== this.epoch) this.lastSeq = 0;
    this.epoch = result.epoch;
    this.server = result;
    if (result.replay?.more && result.replay.nextAfterSeq != null) this.catchUpFrom = result.replay.nextAfterSeq;
    transport.send(JSON.stringify({ jsonrpc: "2.0", method: "initialized" }));
    this.setState("open");
    this.flush();
    this.startHeartbeat();
    if (this.catchUpFrom !== undefined) await this.catchUp();
    if (resuming) {
      const info = { gap, replayed: result.replay?.count ?? 0, epoch: result.epoch };
      for (const l of this.resumeListeners) l(info);
    }
  }

  /** A request written straight to the transport, ahead of the outbox (the handshake, catch-up). */
  private direct<T>(method: string, params: unknown): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { method, params, resolve: resolve as (v: unknown) => void, reject, timer: undefined });
      this.transport?.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  /** More was missed than one page: read the rest while holding live notifications. */
  private async catchUp(): Promise<void> {
    try {
      for (;;) {
        const page = await this.direct<{ events: Message[]; more: boolean; gap: boolean; nextAfterSeq: number | null }>(
          "events/replay", { afterSeq: this.lastSeq, epoch: this.epoch });
        for (const m of page.events) this.deliverInOrder(m);
        if (!page.more) break;
      }
    } finally {
      this.catchUpFrom = undefined;
      const held = [...this.held.values()].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
      this.held = new Map();
      for (const m of held) this.deliverInOrder(m);
    }
  }

  private dropped(transport: Transport, info: CloseInfo): void {
    if (transport !== this.transport) return;
    this.transport = undefined;
    this.stopHeartbeat();
    this.failPending(new ClientError("connectionLost", `the connection to codexd ended (${info.reason}); the call may or may not have run`));
    if (this.state_ === "closed") return;
    const reconnect = this.options.reconnect;
    if (reconnect === false || info.refused) {
      this.setState("closed", new ClientError(info.refused ? "refused" : "connectionLost", info.reason));
      return;
    }
this.setState("reconnecting", new ClientError("connectionLost", info.reason));
    void this.reconnectLoop(reconnect);
  }

  private async reconnectLoop(opts: ReconnectOptions): Promise<void> {
    let delay = opts.initialDelayMs ?? 250;
    const max = opts.maxDelayMs ?? 10_000;
    for (let attempt = 1; this.state_ === "reconnecting"; attempt++) {
await new Promise((r) => setTimeout(r, delay * (0.8 + Math.random() * 0.4)));
      if (this.state_ !== "reconnecting") return;
      try {
        await this.open(true);
        return;
      } catch (err) {
        const e = err as Error;
        if ((e instanceof ClientError && e.kind === "refused") || (opts.maxAttempts && attempt >= opts.maxAttempts)) {
          this.setState("closed", e);
          this.failQueued(e);
          return;
        }
        this.setState("reconnecting", e);
        delay = Math.min(max, delay * 2);
      }
    }
  }

  private failPending(error: ClientError): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(error);
    }
  }

  private failQueued(error: Error): void {
    this.outbox.length = 0;
    this.outboxBytes = 0;
    this.failPending(error instanceof ClientError ? error : new ClientError("closed", error.message));
  }

  private startHeartbeat(): void {
    const every = this.options.heartbeatMs;
    if (every <= 0) return;
    this.heartbeat = setInterval(() => {
      const t = this.transport;
      this.call("daemon/health", undefined, { timeoutMs: every / 2 }).catch((err: Error) => {
        if (err instanceof ClientError && err.kind === "timeout" && t === this.transport) t?.close();
      });
    }, every);
    (this.heartbeat as { unref?: () => void }).unref?.();
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  // ------------------------------------------------------------------ sending

  private enqueue(text: string): void {
    const t = this.transport;
    if (t && this.state_ === "open" && this.outbox.length === 0 && t.buffered < this.options.highWaterBytes) {
      t.send(text);
      return;
    }
    if (this.outboxBytes + text.length > this.options.maxQueuedBytes) {
      throw new ClientError("bufferFull", `more than ${this.options.maxQueuedBytes} bytes are waiting to be sent; `
        + "wait for earlier calls to finish (or the reconnect) and send again");
    }
    this.outbox.push(text);
    this.outboxBytes += text.length;
  }

  private flush(): void {
    const t = this.transport;
    while (t && this.state_ === "open" && this.outbox.length > 0 && t.buffered < this.options.highWaterBytes) {
      const text = this.outbox.shift() as string;
      this.outboxBytes -= text.length;
      t.send(text);
    }
  }

  // ------------------------------------------------------------------ receiving

  private receive(text: string): void {
    let m: Message;
    try {
      m = JSON.parse(text) as Message;
    } catch {
      return; // not JSON: nothing codexd sends
    }
    if (typeof m !== "object" || m === null) return;
    if (typeof m.method === "string") {
      if (m.id !== undefined && m.id !== null) this.serverRequest(m as ServerRequest);
      else this.notification(m);
      return;
    }
    if (typeof m.id !== "number") return;
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.error) {
      p.reject(new RpcError(p.method, m.error.code, m.error.message, m.error.data));
      return;
    }
    this.track(p.method, p.params, m.result);
    p.resolve(m.result);
  }

  /** Remembers the subscriptions a reconnect restores. */
  private track(method: string, params: unknown, result: unknown): void {
    const r = result as Record<string, unknown> | null;
    const p = (params ?? {}) as Record<string, unknown>;
    if (method === "events/subscribe" || method === "events/unsubscribe") {
      this.threads.clear();
      for (const id of (r?.threadIds as string[] | undefined) ?? []) this.threads.add(id);
      this.allThreads = r?.all === true;
    } else if (method === "run/subscribe") {
      for (const id of (r?.runIds as string[] | undefined) ?? []) this.runs.add(id);
      this.allRuns = r?.all === true || this.allRuns;
    } else if (THREAD_OPENERS.has(method)) {
      const id = (r?.thread as { id?: string } | undefined)?.id;
      if (id) this.threads.add(id);
    } else if (method === "thread/unsubscribe" && typeof p.threadId === "string") {
      this.threads.delete(p.threadId);
    }
  }

  private notification(m: Message): void {
    if (typeof m.seq !== "number") {
      this.emit(m);
      return;
    }
    if (this.catchUpFrom !== undefined && m.seq > this.catchUpFrom) {
      // Live while older pages are still being read: hold (bounded; past the bound the pages
      // bring them again).
      if (this.held.size >= this.options.maxHeldNotifications) this.held.clear();
      this.held.set(m.seq, m);
      return;
    }
    this.deliverInOrder(m);
  }

  private deliverInOrder(m: Message): void {
    if (typeof m.seq === "number") {
      if (m.seq <= this.lastSeq) return; // already delivered (a replay overlapping live)
      this.lastSeq = m.seq;
    }
    this.emit(m);
  }

  private emit(m: Message): void {
    const note = m as Notification;
    for (const l of this.listeners.get(note.method) ?? []) {
      try {
        (l as (p: unknown, n: Notification) => void)(note.params, note);
      } catch (err) {
        this.report(err); // a listener's bug is reported and ends nothing here
      }
    }
    for (const l of this.anyListeners) {
      try {
        l(note);
      } catch (err) {
        this.report(err);
      }
    }
  }

  private report(err: unknown): void {
    (this.options.onError ?? console.error)(err);
  }

  private serverRequest(req: ServerRequest): void {
    const handler = this.options.onServerRequest;
    if (!handler || this.answering.has(req.id)) return; // sent again while still being answered
    const earlier = this.answered.get(req.id);
    if (earlier !== undefined) { // sent again after a reconnect lost the answer: the same answer
      this.answer(req.id, earlier);
      return;
    }
    const work = (async () => {
      try {
        const result = await handler(req);
        if (result !== undefined) this.answer(req.id, result);
      } catch (err) {
        this.report(err); // no answer: the request stays pending for another client
      } finally {
        this.answering.delete(req.id);
      }
    })();
    this.answering.set(req.id, work);
  }

  private answer(id: number | string, result: unknown): void {
    this.answered.set(id, result);
    if (this.answered.size > ANSWERS_KEPT) this.answered.delete(this.answered.keys().next().value as number | string);
    this.enqueue(JSON.stringify({ jsonrpc: "2.0", id, result }));
  }
}
