"""codexctl as a person uses it, against a real daemon: options anywhere, prompts after options,
exit codes, tables, status lines on a terminal, Ctrl-C, closed pipes, completion, the man page.

Runs whose CLI is missing fail at once (``runs.codex_command`` points nowhere), which is all these
tests need of a run: its stored request and its events."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import ptyprocess
import pytest

from tests.helpers.daemon import DaemonProc, make_daemon

RUNS_FAIL_FAST = '[runs]\ncodex_command = "/nonexistent/codex"\n'


@pytest.fixture
def d(short_tmp: Path):
    daemon = make_daemon(short_tmp, config=RUNS_FAIL_FAST).start()
    yield daemon
    daemon.stop()


def ctl(d: DaemonProc, *args: str, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codexd.cli.codexctl", *args],
                          env={**d.env, "CODEXD_SOCKET": str(d.socket), **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False,
                          input=input if input is not None else "")


def on_a_terminal(d: DaemonProc, *args: str, env: dict[str, str] | None = None,
                  until: str | None = None, timeout: float = 20) -> tuple[ptyprocess.PtyProcess,
                                                                          str]:
    """codexctl on a real PTY (as in a person's terminal): the process and what it showed
    (until ``until`` appeared, or it exited)."""
    proc = ptyprocess.PtyProcess.spawn(
        [sys.executable, "-m", "codexd.cli.codexctl", *args],
        env={**d.env, "CODEXD_SOCKET": str(d.socket), "TERM": "xterm", **(env or {})},
        dimensions=(40, 200))
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until is not None and until in strip_ansi(seen.decode(errors="replace")):
            break
        try:
            seen += proc.read(65536)
        except EOFError:
            break
    return proc, seen.decode(errors="replace")


def drain(proc: ptyprocess.PtyProcess, timeout: float = 20) -> str:
    """The rest of what ``proc`` shows, until it exits (killed after ``timeout``)."""
    rest = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rest += proc.read(4096)
        except EOFError:
            break
    if proc.isalive():
        proc.kill(signal.SIGKILL)
    proc.wait()
    return rest.decode(errors="replace")


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def no_traceback(out: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in out.stderr + out.stdout, out.stderr


def test_global_options_before_or_after_the_command(d):
    for args in (["--json", "--timeout", "5", "status"], ["status", "--json", "--timeout", "5"],
                 ["status", "--socket", str(d.socket), "--json"]):
        out = ctl(d, *args, env={"CODEXD_SOCKET": "/nonexistent.sock"}
                  if "--socket" in args else None)
        assert out.returncode == 0, (args, out.stderr)
        assert json.loads(out.stdout)["pid"] == d.proc.pid


def test_text_and_json_share_exit_codes(d):
    text, js = ctl(d, "atoms", "get", "nope"), ctl(d, "atoms", "get", "nope", "--json")
    assert text.returncode == js.returncode == 1
    assert json.loads(js.stdout)["exists"] is False
    assert ctl(d, "atoms", "set", "k", "1").returncode == 0
    assert ctl(d, "atoms", "get", "k").returncode == ctl(d, "atoms", "get", "k",
                                                         "--json").returncode == 0


def test_unknown_method_suggests_codexd_methods(d):
    out = ctl(d, "call", "daemon/statsu")
    assert out.returncode == 1
    assert "unknown method 'daemon/statsu'; did you mean daemon/status" in out.stderr
    assert "(code -32601)" in out.stderr
    err = json.loads(ctl(d, "call", "daemon/statsu", "--json").stdout)["error"]
    assert err["code"] == -32601 and err["data"]["suggestions"][0] == "daemon/status"


def _run_id(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode in (0, 1), out.stderr
    ids = re.findall(r"\[(run_[0-9a-f]+)\]", out.stderr)
    assert ids, out.stderr
    return ids[-1]


def test_prompts_follow_options_and_env_is_passed(d, short_tmp):
    conv = ctl(d, "conv", "new", "--cwd", str(short_tmp))
    assert conv.returncode == 0, conv.stderr
    conv_id = conv.stdout.strip()
    sent = ctl(d, "conv", "send", conv_id, "--wait", "--", "fix", "the", "--flaky", "test")
    no_traceback(sent)
    run_id = _run_id(sent)
    shown = json.loads(ctl(d, "runs", "show", run_id, "--json").stdout)
    assert shown["request"]["prompt"] == "fix the --flaky test"
    assert shown["status"] == "failed" and shown["reason"] == "cliMissing"
    assert sent.returncode == 1  # --wait exits with the run's result

    out = ctl(d, "run", "summarize", "--env", "API_MODE=test", "--cwd", str(short_tmp),
              "the", "log")
    assert out.returncode == 0, out.stderr
    shown = json.loads(ctl(d, "runs", "show", out.stdout.strip(), "--json").stdout)
    assert shown["request"]["prompt"] == "summarize the log"
    assert shown["request"]["env"] == {"API_MODE": "[REDACTED]"}
    bad = ctl(d, "run", "x", "--env", "NOEQUALS")
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
    typo = ctl(d, "run", "x", "--wiat")
    assert typo.returncode == 2 and "unrecognized arguments: --wiat" in typo.stderr
    missing = ctl(d, "run", "x", "--cwd", "/nonexistent/folder")
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_export_honours_format_and_extension(d, short_tmp):
    run_id = ctl(d, "run", "--cwd", str(short_tmp), "export me").stdout.strip()
    assert json.loads(ctl(d, "runs", "export", run_id, "--json").stdout)["run"]["runId"] \
        == run_id
    assert ctl(d, "runs", "export", run_id).stdout.startswith("#")  # Markdown by default
    for name, check in (("x.json", lambda t: json.loads(t)["run"]["runId"] == run_id),
                        ("x.md", lambda t: t.startswith("#"))):
        out = ctl(d, "runs", "export", run_id, "-o", str(short_tmp / name))
        assert out.returncode == 0, out.stderr
        assert check((short_tmp / name).read_text()), name
    forced = ctl(d, "runs", "export", run_id, "--format", "markdown", "-o",
                 str(short_tmp / "y.json"))
    assert forced.returncode == 0 and (short_tmp / "y.json").read_text().startswith("#")


def _automation(d: DaemonProc, cwd: Path) -> tuple[str, Path]:
    out = ctl(d, "auto", "new", "--rrule", "FREQ=DAILY;BYHOUR=9", "--tz", "UTC", "--cwd",
              str(cwd), "--name", "daily", "--", "summarize", "yesterday")
    assert out.returncode == 0, out.stderr
    auto_id = out.stdout.strip()
    info = json.loads(ctl(d, "auto", "show", auto_id, "--json").stdout)
    return auto_id, Path(info["file"])


def test_editor_edits_are_never_installed_broken(d, short_tmp):
    auto_id, path = _automation(d, short_tmp)
    before = path.read_bytes()
    editor = short_tmp / "editor.sh"
    editor.write_text('#!/bin/sh\nprintf "rrule = \\"every day\\"\\n" > "$1"\n')
    editor.chmod(0o755)
    out = ctl(d, "auto", "edit", auto_id, "--editor", env={"EDITOR": str(editor)})
    assert out.returncode == 1
    assert "the file is unchanged" in out.stderr and "usage:" not in out.stderr
    no_traceback(out)
    assert path.read_bytes() == before

    good = short_tmp / "good.sh"
    good.write_text("#!/bin/sh\nsed -i 's/BYHOUR=9/BYHOUR=10/' \"$1\"\n")
    good.chmod(0o755)
    out = ctl(d, "auto", "edit", auto_id, "--editor", env={"EDITOR": str(good)})
    assert out.returncode == 0, out.stderr
    shown = json.loads(ctl(d, "auto", "show", auto_id, "--json").stdout)
    assert shown["automation"]["rrule"] == "FREQ=DAILY;BYHOUR=10"


def test_editor_loop_on_a_terminal_offers_another_edit(d, short_tmp):
    """On a terminal a broken edit is offered for editing again (like crontab -e)."""
    auto_id, path = _automation(d, short_tmp)
    editor = short_tmp / "twice.sh"
    marker = short_tmp / "edited-once"
    # First edit breaks the file, the second fixes the hour.
    editor.write_text(f'#!/bin/sh\nif [ -e {marker} ]; then sed -i -e "/^broken = \\[/d" '
                      f'-e "s/BYHOUR=9/BYHOUR=11/" "$1"; else touch {marker}; '
                      'echo "broken = [" >> "$1"; fi\n')
    editor.chmod(0o755)
    proc, seen = on_a_terminal(d, "auto", "edit", auto_id, "--editor",
                               env={"EDITOR": str(editor)}, until="edit it again?")
    assert "not valid TOML" in strip_ansi(seen)
    proc.write(b"y\n")
    rest = drain(proc)
    assert proc.exitstatus == 0, rest
    assert 'rrule = "FREQ=DAILY;BYHOUR=11"' in path.read_text()
    assert "broken" not in path.read_text()


def test_preview_explains_what_it_cannot_read(d, short_tmp):
    garbage = ctl(d, "auto", "preview", "garbage")
    assert garbage.returncode == 1
    assert "neither an automation" in garbage.stderr and "FREQ=" in garbage.stderr
    cron = ctl(d, "auto", "preview", "0 9 * * 1-5")
    assert cron.returncode == 1
    assert "cron expression" in cron.stderr
    assert "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0" in cron.stderr
    # What `new` refuses, `preview` refuses, with the same words.
    fast = "FREQ=SECONDLY;INTERVAL=10"
    preview = ctl(d, "auto", "preview", fast)
    new = ctl(d, "auto", "new", "--rrule", fast, "--cwd", str(short_tmp), "--", "x")
    assert preview.returncode == new.returncode == 1
    assert "minimum interval" in preview.stderr and "minimum interval" in new.stderr
    # BYHOUR without BYMINUTE is on the hour; --tz is honoured for a rule...
    times = ctl(d, "auto", "preview", "FREQ=DAILY;BYHOUR=9", "--tz", "Asia/Tokyo",
                "--count", "2").stdout.split()
    assert len(times) == 2 and all(t.endswith("T09:00:00+09:00") for t in times)
    # ...and refused for an automation, which runs in its own zone.
    auto_id, _ = _automation(d, short_tmp)
    tz = ctl(d, "auto", "preview", auto_id, "--tz", "Asia/Tokyo")
    assert tz.returncode == 2 and "its own zone" in tz.stderr
    assert ctl(d, "auto", "preview", auto_id, "--count", "1").stdout.strip().endswith(
        "T09:00:00+00:00")


def test_terminals_by_unique_name(d, short_tmp):
    made = ctl(d, "term", "new", "--name", "build", "--cwd", str(short_tmp), "--", "sleep", "60")
    assert made.returncode == 0, made.stderr
    term_id = made.stdout.strip()
    dup = ctl(d, "term", "new", "--name", "build", "--cwd", str(short_tmp), "--", "sleep", "1")
    assert dup.returncode == 1 and "named 'build' is open already" in dup.stderr
    ls = ctl(d, "term", "ls").stdout.splitlines()
    assert ls[0].split()[:4] == ["ID", "NAME", "PID", "STATE"]
    assert ls[1].split()[:2] == [term_id, "build"] and "running" in ls[1]
    killed = ctl(d, "term", "kill", "build", "--json")
    assert killed.returncode == 0, killed.stderr
    assert json.loads(killed.stdout)["terminalId"] == term_id
    assert ctl(d, "term", "kill", "build").returncode == 1  # gone now


def test_ask_refuses_a_missing_folder(d):
    out = ctl(d, "ask", "--cwd", "/nonexistent/folder", "hello")
    assert out.returncode == 2 and "no such folder" in out.stderr


def test_lists_are_tables_with_headers(d, short_tmp):
    waited = ctl(d, "run", "--cwd", str(short_tmp), "--wait", "list me")
    assert waited.returncode == 1 and "failed (cliMissing)" in waited.stderr
    rows = ctl(d, "runs", "ls").stdout.splitlines()
    assert rows[0].split() == ["ID", "PROVIDER", "STATUS", "AGE", "DURATION", "ATTEMPTS",
                               "REASON", "PROMPT"]
    assert rows[1].split()[1:3] == ["codex", "failed"] and "cliMissing" in rows[1]
    assert ctl(d, "auto", "ls").stdout == ""  # no rows: the hint goes to stderr
    assert "auto new" in ctl(d, "auto", "ls").stderr
    inbox = ctl(d, "inbox")
    assert inbox.returncode == 0 and "the inbox is empty" in inbox.stderr
    assert ctl(d, "token", "create", "--name", "phone", "--role", "observer").returncode == 0
    tokens = ctl(d, "token", "list").stdout.splitlines()
    assert tokens[0].split()[:4] == ["ID", "NAME", "ROLE", "STATE"]
    assert tokens[1].split()[1:4] == ["phone", "observer", "active"]


def test_colour_only_on_a_terminal_and_never_with_no_color(d, short_tmp):
    ctl(d, "run", "--cwd", str(short_tmp), "--wait", "fails: no codex")
    red = "\x1b[31mfailed"
    assert "\x1b[" not in ctl(d, "runs", "ls").stdout  # piped: plain
    proc, seen = on_a_terminal(d, "runs", "ls")
    proc.wait()
    assert red in seen and "\x1b[1mID" in seen  # a red status, a bold header
    proc, plain = on_a_terminal(d, "runs", "ls", env={"NO_COLOR": "1"})
    proc.wait()
    assert red not in plain and "failed" in plain


def test_run_wait_shows_why_a_run_waits_and_ctrl_c_leaves_it(d, short_tmp):
    assert ctl(d, "runs", "queue", "pause", "--provider", "codex", "--reason",
               "maintenance").returncode == 0
    proc, seen = on_a_terminal(d, "run", "--cwd", str(short_tmp), "--wait", "wait for me",
                               until="maintenance")
    screen = strip_ansi(seen)
    assert "queued #1, 0 ahead: the codex lane is paused (maintenance)" in screen
    proc.kill(signal.SIGINT)
    tail = strip_ansi(drain(proc))
    assert proc.exitstatus == 130, tail
    assert "Traceback" not in tail and "goes on" in tail
    queued = json.loads(ctl(d, "runs", "ls", "--json").stdout)["runs"]
    assert [r["status"] for r in queued] == ["queued"]  # Ctrl-C left the run alone


def test_follow_ctrl_c_and_closed_pipes_are_quiet(d, short_tmp):
    ctl(d, "runs", "queue", "pause", "--provider", "codex")
    run_id = ctl(d, "run", "--cwd", str(short_tmp), "never starts").stdout.strip()
    follow = subprocess.Popen([sys.executable, "-m", "codexd.cli.codexctl", "runs", "logs",
                               "-f", run_id], env={**d.env, "CODEXD_SOCKET": str(d.socket)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    follow.send_signal(signal.SIGINT)
    _out, err = follow.communicate(timeout=20)
    assert follow.returncode == 130 and "Traceback" not in err, err
    # `| head`: the reader goes away after one line.
    for args in (["man"], ["completion", "bash"], ["runs", "ls"]):
        pipe = subprocess.run(
            f"{sys.executable} -m codexd.cli.codexctl {' '.join(args)} | head -c 10",
            shell=True, env={**d.env, "CODEXD_SOCKET": str(d.socket)}, capture_output=True,
            text=True, timeout=60, check=False)
        assert "Traceback" not in pipe.stderr and "Broken pipe" not in pipe.stderr, pipe.stderr


def _commands(parser, path=()):
    """Every (sub)command path of codexctl's parser, with its options."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                opts = [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
                yield (*path, name), opts
                yield from _commands(sub, (*path, name))


def test_completion_and_man_page_cover_every_command_and_flag(d, short_tmp):
    from codexd.cli.codexctl import _parser

    commands = list(_commands(_parser()))
    assert len(commands) > 60
    man = ctl(d, "man")
    assert man.returncode == 0
    page = man.stdout.replace("\\-", "-")
    for path, opts in commands:
        assert f"codexctl {' '.join(path)}" in page, path
        for opt in set(opts) - {"--help"}:
            assert opt in page, (path, opt)
    for shell in ("bash", "zsh", "fish"):
        code = ctl(d, "completion", shell)
        assert code.returncode == 0 and "codexctl" in code.stdout, shell
    assert subprocess.run(["bash", "-n"], input=ctl(d, "completion", "bash").stdout,
                          text=True, check=False).returncode == 0

    # The shell asks codexctl itself (argcomplete's protocol): what would it offer?
    def complete(line: str) -> set[str]:
        out = short_tmp / "completions"
        env = {**d.env, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_SHELL": "bash",
               "COMP_LINE": line, "COMP_POINT": str(len(line)), "COMP_TYPE": "9",
               "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n"}
        subprocess.run([sys.executable, "-m", "codexd.cli.codexctl"], env=env, check=False,
                       timeout=30, capture_output=True)
        return set(out.read_text().split()) if out.exists() else set()

    top = complete("codexctl ")
    assert {p[0] for p, _ in commands} <= top
    for path, opts in commands:
        if opts and path[0] in ("service", "run", "runs", "auto"):
            offered = complete(f"codexctl {' '.join(path)} --")
            assert set(opts) <= offered, (path, set(opts) - offered)


def test_make_run_says_what_to_try_next(short_tmp):
    d = make_daemon(short_tmp)
    d.args = ["--log-format", "console"]
    d.start()
    deadline = time.monotonic() + 10
    while "codexd is ready" not in d.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    d.stop()
    log = d.log()
    assert f"codexd is ready on {d.socket}" in log
    assert re.search(r"codexctl --socket \S+ status", log)
