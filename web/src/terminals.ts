// Terminals hosted by codexd: the list, a new one in a granted workspace, and a real terminal
// emulator (xterm.js) attached to one: typing, resizing, or watching read-only.
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { clear, errorText, h } from "./dom.js";
import type { Console, Pane } from "./main.js";

function bytes(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class TerminalsPane implements Pane {
  readonly id = "terminals";
  readonly title = "Terminals";
  readonly root = h("section", { class: "pane split", "data-testid": "terminals" });
  private readonly list = h("ul", { class: "list" });
  private readonly cwd = h("select", {});
  private readonly readOnly = h("input", { type: "checkbox", "data-testid": "read-only" });
  private readonly screen = h("div", { class: "screen", "data-testid": "screen" });
  private readonly head = h("h2", {}, "No terminal attached");
  private term: Terminal | undefined;
  private fit: FitAddon | undefined;
  private attached: string | undefined;
  private offset = 0;
  private resizeObserver: ResizeObserver | undefined;

  constructor(private readonly ui: Console) {
    this.root.append(
      h("aside", {},
        h("form", { class: "new-thread", onsubmit: (ev: Event) => {
          ev.preventDefault();
          void this.create();
        } }, this.cwd, h("button", { type: "submit", "data-testid": "new-terminal" }, "New terminal")),
        h("label", { class: "check" }, this.readOnly, " attach read-only"),
        this.list),
      h("div", { class: "terminal" }, this.head, this.screen));
    ui.client.on("terminal/output", (p) => {
      if (p.terminalId !== this.attached || !this.term) return;
      if (p.seq < this.offset) return; // already shown (the snapshot covered it)
      const data = bytes(p.data);
      this.offset = p.seq + data.length;
      this.term.write(data);
    });
    ui.client.on("terminal/exited", (p) => {
      if (p.terminalId === this.attached) this.term?.write("\r\n[the program ended]\r\n");
      void this.loadList();
    });
    ui.client.onResume(() => { // attachments end with a connection: attach again
      if (this.attached) void this.attach(this.attached);
    });
  }

  async refresh(): Promise<void> {
    const dirs = await this.ui.workspaces();
    clear(this.cwd, ...dirs.map((d) => h("option", { value: d }, d)));
    await this.loadList();
  }

  private async loadList(): Promise<void> {
    const { terminals } = await this.ui.client.call("terminal/list");
    clear(this.list, ...terminals.map((t) => h("li", {
      class: t.terminalId === this.attached ? "active" : "",
      "data-terminal": t.terminalId,
      onclick: () => void this.attach(t.terminalId),
    }, h("div", { class: "name" }, t.name ?? t.command.join(" ")),
    h("div", { class: "sub" }, `${t.cwd} · ${t.exited ? "exited" : `pid ${t.pid}`} · ${t.attached} attached`))));
    if (terminals.length === 0) this.list.append(h("li", { class: "empty" }, "No terminals."));
  }

  private async create(): Promise<void> {
    if (!this.cwd.value) return this.ui.flash("Grant a workspace first: codexctl workspace add DIR", "error");
    try {
      const { terminalId } = await this.ui.client.call("terminal/create", { cwd: this.cwd.value, cols: 100, rows: 30 });
      await this.attach(terminalId);
    } catch (err) {
      this.ui.flash(errorText(err), "error");
    }
  }

  private async attach(terminalId: string): Promise<void> {
    const c = this.ui.client;
    if (this.attached && this.attached !== terminalId) await c.call("terminal/detach", { terminalId: this.attached }).catch(() => undefined);
    this.term?.dispose();
    this.resizeObserver?.disconnect();
    const readOnly = this.readOnly.checked || this.ui.role !== "operator";
    const term = new Terminal({ convertEol: false, cursorBlink: !readOnly, disableStdin: readOnly, fontSize: 13, scrollback: 5000 });
    const fit = new FitAddon();
    term.loadAddon(fit);
    this.term = term;
    this.fit = fit;
    clear(this.screen);
    term.open(this.screen);
    this.attached = terminalId;
    try {
      const a = await c.call("terminal/attach", { terminalId, readOnly });
      this.offset = a.seq;
      term.write(bytes(a.snapshot));
      this.head.textContent = `${terminalId}${readOnly ? " (read-only)" : ""}`;
    } catch (err) {
      this.ui.flash(errorText(err), "error");
      return;
    }
    if (!readOnly) {
      term.onData((data) => void c.call("terminal/write", { terminalId, data }).catch((e: unknown) => this.ui.flash(errorText(e), "error")));
      term.onResize(({ cols, rows }) => void c.call("terminal/resize", { terminalId, cols, rows }).catch(() => undefined));
      this.resizeObserver = new ResizeObserver(() => this.fit?.fit());
      this.resizeObserver.observe(this.screen);
      fit.fit();
    }
    term.focus();
    void this.loadList();
  }
}
