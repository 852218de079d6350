// codexd's web console: threads with their live turns, approvals, terminals, inbox, runs and
// automations, over the TypeScript client (same-origin WebSocket, the session cookie that
// /login set).
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { Client, ClientError, webSocket, type Approval, type ServerRequest } from "../../clients/typescript/src/index.js";
import { h, clear, errorText } from "./dom.js";
import { ApprovalsPane } from "./approvals.js";
import { ThreadsPane } from "./threads.js";
import { TerminalsPane } from "./terminals.js";
import { AutomationsPane, InboxPane, RunsPane } from "./lists.js";
import { GitPane } from "./git.js";

export interface Pane {
  readonly id: string;
  readonly title: string;
  readonly root: HTMLElement;
  /** Called when the pane is shown (and after a reconnect that lost notifications). */
  refresh(): Promise<void>;
}

export interface Console {
  client: Client;
  role: string;
  workspaces(): Promise<string[]>;
  badge(paneId: string, count: number): void;
  flash(text: string, kind?: "error" | "info"): void;
}

const app = document.getElementById("app") as HTMLElement;

function loginPage(reason: string): void {
  clear(app, h("main", { class: "login", "data-testid": "login" },
    h("h1", {}, "codexd"),
    h("p", {}, "This browser is not logged in to codexd."),
    h("p", { class: "reason" }, reason),
    h("p", {}, "On the machine running codexd, run ", h("code", {}, "codexctl web"),
      " and open the link it prints (it works once, within a minute).")));
}

async function whoami(): Promise<{ name: string; role: string } | string> {
  const resp = await fetch("/whoami", { credentials: "same-origin" });
  const body = await resp.json() as { name: string; role: string; error?: string };
  return resp.ok ? body : body.error ?? `refused (${resp.status})`;
}

async function main(): Promise<void> {
  const who = await whoami().catch((e: unknown) => errorText(e));
  if (typeof who === "string") {
    loginPage(who);
    return;
  }
  const requests = new Set<(req: ServerRequest) => void>();
  let client: Client;
  try {
    client = await Client.connect({
      connect: webSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`),
      clientInfo: { name: "codexd-console", version: "0.1.0", title: "codexd web console" },
      // Approvals are answered from the Approvals pane through approval/respond; the requests
      // themselves only tell the pane that a new one is waiting.
      onServerRequest: (req) => {
        for (const r of requests) r(req);
        return undefined;
      },
    });
  } catch (err) {
    if (err instanceof ClientError && err.kind === "refused") loginPage(err.message);
    else clear(app, h("p", { class: "boot error" }, `Cannot reach codexd: ${errorText(err)}`));
    return;
  }
  await client.call("events/subscribe", { all: true });
  await client.call("run/subscribe", { all: true }).catch(() => undefined);

  const nav = h("nav", {});
  const main = h("main", {});
  const status = h("span", { class: "conn", "data-testid": "connection" }, "connected");
  const flashBox = h("div", { class: "flash", role: "status" });
  const badges = new Map<string, HTMLElement>();
  const ui: Console = {
    client,
    role: who.role,
    workspaces: async () => (await client.call("workspace/list")).grants.map((g) => g.path),
    badge: (id, count) => {
      const b = badges.get(id);
      if (b) b.textContent = count ? String(count) : "";
    },
    flash: (text, kind = "info") => {
      const item = h("p", { class: kind }, text);
      flashBox.append(item);
      setTimeout(() => item.remove(), kind === "error" ? 8000 : 3000);
    },
  };
  const approvals = new ApprovalsPane(ui);
  requests.add(() => void approvals.refresh());
  const panes: Pane[] = [new ThreadsPane(ui), approvals, new TerminalsPane(ui), new InboxPane(ui),
    new RunsPane(ui), new AutomationsPane(ui), new GitPane(ui)];
  let current: Pane | undefined;
  const show = (pane: Pane): void => {
    current = pane;
    for (const p of panes) p.root.hidden = p !== pane;
    for (const b of nav.querySelectorAll("button")) b.classList.toggle("active", b.dataset.pane === pane.id);
    location.hash = pane.id;
    void pane.refresh().catch((e: unknown) => ui.flash(errorText(e), "error"));
  };
  for (const p of panes) {
    const badge = h("span", { class: "badge" });
    badges.set(p.id, badge);
    nav.append(h("button", { "data-pane": p.id, onclick: () => show(p) }, p.title, badge));
    p.root.hidden = true;
    main.append(p.root);
  }
  // While this tab is visible and focused, codexd sends no notifications (desktop, webhook,
  // program) about what it shows: everything. Said again on every change and reconnect.
  const visibility = (): void => {
    const focused = document.visibilityState === "visible" && document.hasFocus();
    void client.call("client/visibility", { focused, all: true }).catch(() => undefined);
  };
  document.addEventListener("visibilitychange", visibility);
  window.addEventListener("focus", visibility);
  window.addEventListener("blur", visibility);
  visibility();
  client.onState((state, detail) => {
    if (state === "open") visibility();
    status.textContent = state === "open" ? "connected" : state === "reconnecting"
      ? "reconnecting…" : `disconnected${detail ? `: ${detail.message}` : ""}`;
    status.className = `conn ${state}`;
    if (state === "closed" && detail instanceof ClientError && detail.kind === "refused") loginPage(detail.message);
  });
  client.onResume((r) => {
    if (r.gap) void current?.refresh();
  });
  clear(app,
    h("header", {}, h("strong", {}, "codexd"),
      h("span", { class: "who" }, `${who.name} · ${who.role}`), status,
      h("button", { class: "logout", onclick: async () => {
        await fetch("/logout", { method: "POST", credentials: "same-origin" });
        client.close();
        loginPage("You logged out.");
      } }, "Log out")),
    nav, main, flashBox);
  void approvals.refresh();
  const start = panes.find((p) => `#${p.id}` === location.hash) ?? panes[0];
  if (start) show(start);
}

export type { Approval };
void main();
