// Compile-time checks: this file only has to compile (tsc runs strict). Each @ts-expect-error
// line must be an error, so a typing regression (anything becoming `any`) fails the build.
import { test } from "node:test";
import type { Client, Notification } from "../src/index.js";

export function typed(c: Client): void {
  void c.call("atom/get", { key: "k" }).then((r) => {
    const exists: boolean = r.exists;
    // @ts-expect-error: an atom has no `size`
    void r.size;
    return exists;
  });
  // @ts-expect-error: key is a string
  void c.call("atom/get", { key: 5 });
  // @ts-expect-error: atom/set needs a value
  void c.call("atom/set", { key: "k" });
  // Forwarded app-server methods are typed too.
  void c.call("thread/start", { cwd: "/tmp" }).then((r) => r.thread.id.toUpperCase());
  // @ts-expect-error: cwd is a string
  void c.call("thread/start", { cwd: 1 });
  c.on("atom/changed", (p) => p.key.toUpperCase());
  c.on("turn/completed", (p) => p.threadId.toUpperCase());
  // @ts-expect-error: atom/changed has no threadId
  c.on("atom/changed", (p) => p.threadId);
  // Methods no schema knows are still callable, untyped.
  void c.call("some/future/method", { anything: true });
  const n: Notification<"atom/changed"> = { method: "atom/changed", params: { key: "k", deleted: false, revision: 1, value: 1, updatedAt: "" } };
  void n;
}

test("the types compile (checked by tsc, not at run time)", () => {});
