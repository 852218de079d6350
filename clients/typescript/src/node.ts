// Node-only: the NDJSON Unix socket (codexctl's transport; no token needed, same-user only).
import { connect as netConnect, type Socket } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import type { CloseInfo, Connector, Transport } from "./transport.js";

export * from "./index.js";

/** Where the daemon listens by default: `$XDG_RUNTIME_DIR/codexd/codexd.sock`. */
export function defaultSocketPath(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime) return join(runtime, "codexd", "codexd.sock");
  return join(process.env.TMPDIR ?? "/tmp", `codexd-${process.getuid?.() ?? homedir()}`, "codexd.sock");
}

export interface UnixSocketOptions {
  /** A line longer than this from the daemon ends the connection (default 64 MiB). */
  maxMessageBytes?: number;
}

/** A connector for the NDJSON socket (`codexd.sock`): one JSON-RPC message per line. */
export function unixSocket(path: string = defaultSocketPath(), options: UnixSocketOptions = {}): Connector {
  const max = options.maxMessageBytes ?? 64 << 20;
  return () => new Promise<Transport>((resolve, reject) => {
    const socket = netConnect({ path });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      reject(Object.assign(new Error(`${path}: ${err.code === "ENOENT" || err.code === "ECONNREFUSED"
        ? "no daemon is listening (start it: codexd run, or codexctl service install --now)" : err.message}`),
      { refused: false }));
    });
    socket.once("connect", () => {
      socket.removeAllListeners("error");
      resolve(new LineTransport(socket, max));
    });
  });
}

class LineTransport implements Transport {
  onmessage: (text: string) => void = () => {};
  onclose: (info: CloseInfo) => void = () => {};
  ondrain: () => void = () => {};
  private parts: Buffer[] = [];
  private partBytes = 0;
  private closed = false;

  constructor(private readonly socket: Socket, private readonly max: number) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.data(chunk));
    socket.on("drain", () => this.ondrain());
    socket.on("error", (err) => this.end(err.message));
    socket.on("close", () => this.end("closed"));
  }

  get buffered(): number {
    return this.socket.writableLength;
  }

  private data(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl >= 0; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      const line = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      this.partBytes = 0;
      if (line.length) this.onmessage(line.toString("utf8"));
      if (this.closed) return;
    }
    if (start < chunk.length) {
      this.parts.push(chunk.subarray(start));
      this.partBytes += chunk.length - start;
      if (this.partBytes > this.max) {
        this.socket.destroy();
        this.end(`a message longer than ${this.max} bytes`);
      }
    }
  }

  send(text: string): void {
    this.socket.write(text + "\n");
  }

  private end(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.onclose({ reason });
  }

  close(): void {
    this.socket.end();
    this.socket.destroySoon?.();
  }
}
