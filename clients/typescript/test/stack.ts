// A whole codexd for the tests: the real daemon, the real `codex app-server`, the fake model
// server (tests/helpers/stack.py, started and stopped here).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

export interface Stack {
  socket: string;
  websocket: string;
  token: string;
  observerToken: string;
  workspace: string;
  pid: number;
  /** Queue fake-model replies: each reply a list of `{message}` / `{shell}` items. */
  script(...replies: Array<Array<{ message: string } | { shell: string }>>): Promise<void>;
  stop(): Promise<void>;
}

function python(): string {
  if (process.env.CODEXD_PYTHON) return process.env.CODEXD_PYTHON;
  const venv = join(repo, ".venv/bin/python");
  return existsSync(venv) ? venv : "python3";
}

export async function startStack(extraConfig = ""): Promise<Stack> {
  const child: ChildProcess = spawn(python(), ["-m", "tests.helpers.stack", extraConfig], {
    cwd: repo,
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, PATH: `${join(repo, ".tools/npm/node_modules/.bin")}:${process.env.PATH ?? ""}` },
  });
  const lines: Interface = createInterface({ input: child.stdout! });
  const waiting: Array<(line: string) => void> = [];
  const early: string[] = [];
  lines.on("line", (line) => {
    const w = waiting.shift();
    if (w) w(line);
    else early.push(line);
  });
  const next = (): Promise<string> => new Promise((resolve, reject) => {
    const e = early.shift();
    if (e !== undefined) return resolve(e);
    waiting.push(resolve);
    child.once("exit", (code) => reject(new Error(`the test stack exited (${code})`)));
  });
  const info = JSON.parse(await next()) as Omit<Stack, "script" | "stop">;
  const command = async (cmd: object): Promise<void> => {
    child.stdin!.write(JSON.stringify(cmd) + "\n");
    await next();
  };
  return {
    ...info,
    script: (...replies) => command({ script: replies }),
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.stdin!.end();
    }),
  };
}
