// A repository's status and its unstaged and staged diffs, with stage / unstage / discard per
// file and per hunk, and a commit box. Kept current by files/watch (git/changed, files/changed).
import type { FileDiff, Hunk } from "../../clients/typescript/src/index.js";
import { clear, errorText, h } from "./dom.js";
import type { Console, Pane } from "./main.js";

type Action = "stage" | "unstage" | "discard";

export class GitPane implements Pane {
  readonly id = "git";
  readonly title = "Git";
  readonly root = h("section", { class: "pane split", "data-testid": "git" });
  private readonly repo = h("select", { "data-testid": "git-repo" });
  private readonly summary = h("div", { class: "sub", "data-testid": "git-summary" });
  private readonly files = h("ul", { class: "list" });
  private readonly diff = h("div", { class: "diff", "data-testid": "git-diff" });
  private readonly message = h("input", { type: "text", placeholder: "Commit message", "data-testid": "commit-message" });
  private watchId: string | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly ui: Console) {
    this.repo.addEventListener("change", () => void this.watch());
    const commit = h("form", { class: "new-thread", onsubmit: (ev: Event) => {
      ev.preventDefault();
      void this.commit();
    } }, this.message, h("button", { type: "submit", "data-testid": "commit" }, "Commit"));
    this.root.append(
      h("aside", {}, this.repo, this.summary, this.files, ui.role === "operator" ? commit : null),
      h("div", { class: "run" }, this.diff));
    const changed = (): void => {
      clearTimeout(this.timer); // a burst of changes: one reload
      this.timer = setTimeout(() => void this.load().catch(() => undefined), 150);
    };
    ui.client.on("git/changed", (p) => p.watchId === this.watchId && changed());
    ui.client.on("files/changed", (p) => p.watchId === this.watchId && changed());
  }

  async refresh(): Promise<void> {
    const dirs = await this.ui.workspaces();
    const keep = this.repo.value;
    clear(this.repo, ...dirs.map((d) => h("option", { value: d }, d)));
    if (keep && dirs.includes(keep)) this.repo.value = keep;
    if (!this.watchId) await this.watch();
    else await this.load();
  }

  private async watch(): Promise<void> {
    const c = this.ui.client;
    if (this.watchId) await c.call("files/unwatch", { watchId: this.watchId }).catch(() => undefined);
    this.watchId = undefined;
    if (!this.repo.value) return;
    try {
      this.watchId = (await c.call("files/watch", { path: this.repo.value })).watchId;
    } catch {
      // a folder the OS will not watch: the view still loads, without live updates
    }
    await this.load();
  }

  private async load(): Promise<void> {
    const repo = this.repo.value;
    if (!repo) {
      clear(this.diff, h("p", { class: "empty" }, "Grant a workspace first: codexctl workspace add DIR"));
      return;
    }
    const c = this.ui.client;
    const status = await c.call("git/status", { repo });
    if (!status.isRepository) {
      this.summary.textContent = "not a git repository";
      clear(this.files);
      clear(this.diff);
      return;
    }
    this.summary.textContent = `${status.branch ?? "(detached)"}${status.upstream ? ` → ${status.upstream}` : ""}`
      + `${status.ahead ? ` ↑${status.ahead}` : ""}${status.behind ? ` ↓${status.behind}` : ""}`
      + `${status.inProgress ? ` · ${status.inProgress} in progress` : ""}`;
    const files = status.files ?? [];
    clear(this.files, ...files.map((f) => h("li", { "data-file": f.path },
      h("div", { class: "name" }, h("code", {}, `${f.index}${f.worktree}`), " ", f.path),
      this.ui.role === "operator" ? h("div", { class: "actions" },
        f.worktree !== "." ? h("button", { onclick: () => void this.run("git/stage", { repo, paths: [`${status.root}/${f.path}`] }) }, "Stage") : null,
        f.index !== "." && f.index !== "?" ? h("button", { onclick: () => void this.run("git/unstage", { repo, paths: [`${status.root}/${f.path}`] }) }, "Unstage") : null)
        : null)));
    if (files.length === 0) this.files.append(h("li", { class: "empty" }, "Nothing to commit."));
    const [unstaged, staged] = await Promise.all([c.call("git/diff", { repo }), c.call("git/diff", { repo, staged: true })]);
    clear(this.diff,
      h("h2", {}, "Changes"), ...this.section(unstaged.files, status.root, false),
      h("h2", {}, "Staged"), ...this.section(staged.files, status.root, true));
  }

  private section(files: FileDiff[], root: string, staged: boolean): HTMLElement[] {
    if (files.length === 0) return [h("p", { class: "empty" }, staged ? "Nothing staged." : "No unstaged changes.")];
    return files.map((f) => h("div", { class: "card file", "data-diff": `${staged ? "staged" : "worktree"}:${f.path}` },
      h("div", { class: "meta" }, h("span", { class: "name" }, f.path), h("span", {}, `+${f.added} −${f.deleted}`)),
      ...(f.binary ? [h("p", { class: "empty" }, "binary file")] : f.hunks.map((hk) => this.hunk(hk, `${root}/${f.path}`, staged)))));
  }

  private hunk(hunk: Hunk, path: string, staged: boolean): HTMLElement {
    const act = (action: Action) => () => void this.run("git/applyHunk", { repo: this.repo.value, path, action, patch: hunk.patch });
    return h("div", { class: "hunk" },
      h("div", { class: "hunk-head" }, h("code", {}, hunk.header),
        this.ui.role === "operator" ? h("span", { class: "actions" },
          staged ? h("button", { onclick: act("unstage") }, "Unstage hunk")
            : h("button", { onclick: act("stage") }, "Stage hunk"),
          staged ? null : h("button", { class: "decline", onclick: act("discard") }, "Discard hunk")) : null),
      h("pre", { class: "lines" }, ...hunk.lines.map((l) => h("span", {
        class: l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : "ctx" }, `${l}\n`))));
  }

  private async run(method: "git/stage" | "git/unstage" | "git/applyHunk", params: object): Promise<void> {
    try {
      await this.ui.client.call(method, params as never);
    } catch (err) {
      this.ui.flash(errorText(err), "error");
    }
    await this.load();
  }

  private async commit(): Promise<void> {
    const message = this.message.value.trim();
    if (!message) return this.ui.flash("Write a commit message first", "error");
    try {
      await this.ui.client.call("git/commit", { repo: this.repo.value, message });
      this.message.value = "";
      this.ui.flash("Committed");
    } catch (err) {
      this.ui.flash(errorText(err), "error");
    }
    await this.load();
  }
}
