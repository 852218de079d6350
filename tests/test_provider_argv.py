"""How a run's options become each CLI's command line, and what is dropped (and said) when the
installed binary lacks a flag. Pure: no process."""

from __future__ import annotations

from codexd.runs import providers
from codexd.runs.providers import RunSpec


class Lacking:
    def __init__(self, *missing: str) -> None:
        self.missing = set(missing)

    def has(self, flag: str) -> bool:
        return flag not in self.missing


def test_codex_gets_every_harness_option():
    spec = RunSpec(provider="codex", prompt="p", cwd="/w", model="gpt-x",
                   sandbox="workspace-write",
                   mcp={"docs": {"command": "/usr/bin/docs-mcp", "args": ["--ro"],
                                 "env": {"TOKEN_FILE": "/t"}}},
                   config={"model_reasoning_effort": "low", "tools.web_search": True},
                   images=["/w/shot.png"], add_dirs=["/data"], codex_profile="fast",
                   continue_last=True)
    argv, drops = providers.argv("codex", spec)
    assert drops == []
    assert argv[:6] == ["codex", "exec", "--json", "--skip-git-repo-check", "--cd", "/w"]
    pairs = [(argv[i], argv[i + 1]) for i in range(6, len(argv) - 3)]
    assert ("--config", 'mcp_servers.docs.command="/usr/bin/docs-mcp"') in pairs
    assert ("--config", 'mcp_servers.docs.args=["--ro"]') in pairs
    assert ("--config", 'mcp_servers.docs.env={"TOKEN_FILE" = "/t"}') in pairs
    assert ("--config", 'model_reasoning_effort="low"') in pairs
    assert ("--config", "tools.web_search=true") in pairs
    assert ("--image", "/w/shot.png") in pairs and ("--add-dir", "/data") in pairs
    assert ("--profile", "fast") in pairs
    assert argv[-3:] == ["resume", "--last", "-"]


def test_claude_gets_its_flags_and_is_told_what_it_has_not():
    spec = RunSpec(provider="claude", prompt="p", cwd="/w", add_dirs=["/data"],
                   config={"x": 1}, images=["/w/a.png"], codex_profile="fast",
                   continue_last=True, mcp_config_file="/tmp/m.json",
                   permission_prompt_tool="mcp__codexd__approve", max_budget_usd=2.0)
    argv, drops = providers.argv("claude", spec)
    assert "--continue" in argv and argv[argv.index("--add-dir") + 1] == "/data"
    assert argv[argv.index("--mcp-config") + 1] == "/tmp/m.json"
    assert argv[argv.index("--permission-prompt-tool") + 1] == "mcp__codexd__approve"
    assert argv[argv.index("--max-budget-usd") + 1] == "2"
    assert {option for option, _ in drops} == {"harness.config", "harness.images",
                                                "harness.codexProfile"}


def test_a_flag_the_binary_lacks_is_dropped_with_its_reason():
    spec = RunSpec(provider="codex", prompt="p", cwd="/w", images=["/a.png"],
                   add_dirs=["/d"], output_schema_file="/s.json")
    argv, drops = providers.argv("codex", spec, Lacking("--image", "--output-schema"))
    assert "--image" not in argv and "--output-schema" not in argv and "--add-dir" in argv
    assert dict(drops) == {"harness.images": "this codex has no --image",
                           "outputSchema": "this codex has no --output-schema"}
    claude = RunSpec(provider="claude", prompt="p", cwd="/w", mcp_config_file="/m.json",
                     permission_prompt_tool="mcp__codexd__approve")
    argv, drops = providers.argv("claude", claude, Lacking("--mcp-config"))
    assert "--mcp-config" not in argv and "--permission-prompt-tool" not in argv
    assert [o for o, _ in drops] == ["harness.mcp"]


def test_every_codex_item_kind_keeps_its_content():
    import json

    out = providers.Outcome()

    def line(kind: str, item: dict) -> list:
        return providers.parse_line("codex", json.dumps({"type": kind, "item": item}), out)

    assert line("item.completed", {"type": "reasoning", "text": "think"}) == [
        ("run.semantic", {"kind": "reasoning", "text": "think"})]
    [(_, mcp)] = line("item.completed", {"type": "mcp_tool_call", "server": "docs",
                                         "tool": "search", "arguments": {"q": "x"},
                                         "result": {"content": []}, "status": "completed"})
    assert mcp["kind"] == "mcpToolCall" and mcp["server"] == "docs" and mcp["tool"] == "search"
    assert line("item.completed", {"type": "web_search", "query": "trio nursery"}) == [
        ("run.semantic", {"kind": "webSearch", "query": "trio nursery"})]
    [(_, todo)] = line("item.updated", {"type": "todo_list", "items": [
        {"text": "a", "completed": True}, {"text": "b", "completed": False}]})
    assert todo["items"] == [{"text": "a", "completed": True}, {"text": "b", "completed": False}]
    line("item.completed", {"type": "file_change", "changes": [{"path": "/w/x.py",
                                                                 "kind": "update"}]})
    assert out.changed == {"/w/x.py"} and out.todos == todo["items"]


def test_an_interactive_session_runs_the_tui_with_what_it_takes():
    spec = RunSpec(provider="codex", prompt="fix it", cwd="/w", model="gpt-x",
                   resume_session="thr-1", add_dirs=["/d"], max_budget_usd=1.0)
    argv, drops = providers.interactive_argv("codex", spec, remote="/run/app-server.sock",
                                             unattended=("harness.timeoutMs",))
    assert argv == ["codex", "resume", "--remote", "unix:///run/app-server.sock", "--cd", "/w",
                    "--model", "gpt-x", "--add-dir", "/d", "thr-1", "fix it"]
    assert {option for option, _ in drops} == {"harness.timeoutMs", "maxBudgetUsd"}
    # A TUI without --remote runs on its own app-server, and says so.
    argv, drops = providers.interactive_argv("codex", RunSpec(provider="codex", prompt="",
                                                              cwd="/w"),
                                             Lacking("tui:--remote"), remote="/s")
    assert argv == ["codex", "--cd", "/w"] and dict(drops) == {
        "remote": "this codex has no --remote"}
    # claude: a new session gets the id codexd chose; a resumed one its own.
    new = RunSpec(provider="claude", prompt="hi", cwd="/w", sandbox="read-only")
    argv, drops = providers.interactive_argv("claude", new, new_session="u-1")
    assert argv == ["claude", "--session-id", "u-1", "hi"]
    assert [option for option, _ in drops] == ["sandbox"]
    argv, _ = providers.interactive_argv("claude", RunSpec(
        provider="claude", prompt="", cwd="/w", resume_session="u-1"), new_session=None)
    assert argv == ["claude", "--resume", "u-1"]
