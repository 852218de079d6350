// The TypeScript client against a real daemon (with the real codex app-server behind it).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, connect as tcpConnect, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client, ClientError, RpcError, unixSocket, webSocket, type Connector, type State } from "../src/node.js";
import { startStack, type Stack } from "./stack.js";

let stack: Stack;

before(async () => {
  // A small held-notification budget so that a reconnect's catch-up needs several pages.
  stack = await startStack("[rpc]\npending_notifications = 40\n");
});
after(async () => {
  await stack?.stop();
});

function until<T>(pred: () => T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      const v = pred();
      if (v !== undefined && v !== false) return resolve(v);
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

const transports: Array<[string, () => Connector]> = [
  ["websocket", () => webSocket(stack.websocket, { token: stack.token })],
  ["unix socket", () => unixSocket(stack.socket)],
];

for (const [name, connector] of transports) {
  describe(`over the ${name}`, () => {
    test("typed calls and typed errors", async () => {
      const c = await Client.connect({ connect: connector(), clientInfo: { name: "ts-test" } });
      try {
        assert.equal(c.server?.server, "codexd");
        const status = await c.call("daemon/status");
        assert.equal(status.pid, stack.pid);
        const key = `ts/${name}`;
        const set = await c.call("atom/set", { key, value: { n: 1, name } });
        const got = await c.call("atom/get", { key });
        assert.equal(got.exists, true);
        assert.deepEqual(got.value, { n: 1, name });
        assert.equal(got.revision, set.revision);
        // An unknown method: the daemon's code, named.
        const unknown = await c.call("atom/gett", {}).catch((e: unknown) => e);
        assert.ok(unknown instanceof RpcError);
        assert.equal(unknown.code, -32601);
        assert.equal(unknown.codeName, "METHOD_NOT_FOUND");
        // Wrong params: the field is named in data.
        const wrong = await c.call("atom/get", { key: 5 } as never).catch((e: unknown) => e);
        assert.ok(wrong instanceof RpcError && wrong.is("INVALID_PARAMS"));
        assert.equal((wrong.data as { field?: string }).field, "key");
        // The connection is still fine after both.
        assert.equal(typeof (await c.call("daemon/health")).ok, "boolean");
      } finally {
        c.close();
      }
      assert.equal(c.state, "closed");
      await assert.rejects(c.call("daemon/status"), (e: unknown) => e instanceof ClientError && e.kind === "closed");
    });
  });
}

test("a role the token lacks is a typed error; a wrong token is refused with the reason", async () => {
  const observer = await Client.connect({ connect: webSocket(stack.websocket, { token: stack.observerToken }) });
  try {
    const e = await observer.call("atom/set", { key: "ts/no", value: 1 }).catch((x: unknown) => x);
    assert.ok(e instanceof RpcError && e.is("ROLE_REQUIRED"), String(e));
    assert.equal((e.data as { needs: string }).needs, "operator");
    assert.ok(Array.isArray((await observer.call("atom/list", { prefix: "ts/" })).atoms));
  } finally {
    observer.close();
  }
  const refused = await Client.connect({ connect: webSocket(stack.websocket, { token: "cxd_nope_nope" }) })
    .catch((x: unknown) => x);
  assert.ok(refused instanceof ClientError, String(refused));
  assert.equal(refused.kind, "refused");
  assert.match(refused.message, /unknown or wrong token/);
  const missing = await Client.connect({ connect: webSocket(stack.websocket) }).catch((x: unknown) => x);
  assert.ok(missing instanceof ClientError && missing.kind === "refused");
  assert.match(missing.message, /no credential/);
  const nobody = await Client.connect({ connect: unixSocket(join(stack.workspace, "none.sock")) }).catch((x: unknown) => x);
  assert.ok(nobody instanceof ClientError && nobody.kind === "unreachable");
  assert.match(nobody.message, /no daemon is listening/);
});

test("a real Codex turn whose approval is answered from TypeScript", async () => {
  await stack.script([{ shell: "echo from-typescript > ts.txt" }], [{ message: "wrote ts.txt" }]);
  const asked: Array<{ method: string; command: unknown; cwd: unknown }> = [];
  const c = await Client.connect({
    connect: webSocket(stack.websocket, { token: stack.token }),
    clientInfo: { name: "ts-approver" },
    onServerRequest: (req) => {
      if (req.method !== "item/commandExecution/requestApproval") return undefined;
      const p = req.params as { command?: unknown; cwd?: unknown };
      asked.push({ method: req.method, command: p.command, cwd: p.cwd });
      return { decision: "accept" };
    },
  });
  try {
    const notes: Array<{ method: string; seq?: number }> = [];
    c.onNotification((n) => notes.push(n));
    const resolved: unknown[] = [];
    c.on("serverRequest/resolved", (p) => resolved.push(p));
    let completed: unknown;
    c.on("turn/completed", (p) => { completed = p; });
    const started = await c.call("thread/start", { cwd: stack.workspace });
    const threadId = started.thread.id;
    await c.call("turn/start", { threadId, input: [{ type: "text", text: "write the file", text_elements: [] }] });
    await until(() => completed, "turn/completed", 60_000);
    assert.equal(asked.length, 1);
    assert.match(String(asked[0]?.command), /from-typescript/);
    assert.equal(readFileSync(join(stack.workspace, "ts.txt"), "utf8"), "from-typescript\n");
    assert.equal(resolved.length, 1);
    assert.match(JSON.stringify(resolved[0]), /ts-approver#/);
    // The agent's words arrived, and every seq'd notification came once, in order.
    const items = notes.filter((n) => n.method === "item/completed").map((n) => JSON.stringify(n));
    assert.ok(items.some((i) => i.includes("wrote ts.txt")), "the agent message");
    const seqs = notes.flatMap((n) => (n.seq === undefined ? [] : [n.seq]));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    assert.equal(new Set(seqs).size, seqs.length);
    // The approval is recorded as answered by this client.
    const list = await c.call("approval/list", { threadId });
    assert.equal(list.approvals[0]?.status, "resolved");
  } finally {
    c.close();
  }
});

/** A TCP proxy in front of the daemon that the test can cut and hold down, like a network. */
class Proxy {
  private server: Server;
  private sockets = new Set<Socket>();
  down = false;
  port = 0;

  constructor(private readonly target: number) {
    this.server = createServer((client) => {
      if (this.down) {
        client.destroy();
        return;
      }
      const upstream = tcpConnect(this.target, "127.0.0.1");
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {});
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
  }

  listen(): Promise<void> {
    return new Promise((r) => this.server.listen(0, "127.0.0.1", () => {
      this.port = (this.server.address() as { port: number }).port;
      r();
    }));
  }

  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  close(): void {
    this.cut();
    this.server.close();
  }
}

test("a reconnect mid-stream loses no notification and delivers none twice", async () => {
  const target = Number(new URL(stack.websocket).port);
  const proxy = new Proxy(target);
  await proxy.listen();
  const states: State[] = [];
  const resumes: Array<{ gap: boolean; replayed: number }> = [];
  const reader = await Client.connect({
    connect: webSocket(`ws://127.0.0.1:${proxy.port}/`, { token: stack.token }),
    clientInfo: { name: "ts-reader" },
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
    heartbeatMs: 0,
  });
  const writer = await Client.connect({ connect: unixSocket(stack.socket), clientInfo: { name: "ts-writer" } });
  try {
    reader.onState((s) => states.push(s));
    reader.onResume((r) => resumes.push(r));
    const got: number[] = [];
    const seqs: number[] = [];
    reader.on("atom/changed", (p, note) => {
      if (!p.key.startsWith("stream/")) return;
      got.push(Number(p.key.slice("stream/".length)));
      seqs.push(note.seq ?? -1);
    });
    const N = 600;
    for (let i = 0; i < N; i++) {
      if (i === 150) {
        // The network drops and stays down while 300 more changes happen (more than one
        // replay page of 20 for this daemon), then comes back.
        proxy.down = true;
        proxy.cut();
      }
      if (i === 450) proxy.down = false;
      await writer.call("atom/set", { key: `stream/${i}`, value: i });
    }
    await until(() => got.length >= N || undefined, `all ${N} changes (have ${got.length})`);
    await new Promise((r) => setTimeout(r, 200)); // nothing more arrives: no duplicates late
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => i));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    assert.ok(states.includes("reconnecting") && states.at(-1) === "open", states.join(","));
    assert.equal(resumes.length, 1);
    assert.equal(resumes[0]?.gap, false);
    // More was missed than one page (20 here): the rest came by events/replay paging.
    assert.ok((resumes[0]?.replayed ?? 0) > 0 && (resumes[0]?.replayed ?? 99) <= 20, JSON.stringify(resumes));
    // A call after the reconnect works; one made while down failed as connectionLost or waited.
    assert.equal((await reader.call("daemon/status")).pid, stack.pid);
  } finally {
    reader.close();
    writer.close();
    proxy.close();
  }
});

test("calls queued while disconnected are bounded, and sent after the reconnect", async () => {
  const proxy = new Proxy(Number(new URL(stack.websocket).port));
  await proxy.listen();
  const c = await Client.connect({
    connect: webSocket(`ws://127.0.0.1:${proxy.port}/`, { token: stack.token }),
    reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
    maxQueuedBytes: 4096,
    heartbeatMs: 0,
  });
  try {
    proxy.down = true;
    proxy.cut();
    await until(() => c.state === "reconnecting" || undefined, "the drop to be seen");
    const queued = c.call("atom/get", { key: "ts/queued" });
    const big = await c.call("atom/set", { key: "ts/big", value: "x".repeat(8000) }).catch((e: unknown) => e);
    assert.ok(big instanceof ClientError && big.kind === "bufferFull", String(big));
    proxy.down = false;
    assert.equal((await queued).exists, false);
  } finally {
    c.close();
    proxy.close();
  }
});
