#!/usr/bin/env python3
"""A stand-in for `codex exec --json` used for fault injection and queue tests (not for the
real-CLI tests). Reads the prompt from stdin, prints codex-style JSON events.

Behaviour from the environment: FAKE_LOG (append "start|end <run> <time>" lines),
FAKE_WAIT (wait until this file exists), FAKE_FAIL_ONCE (a marker file: fail silently the first
time), FAKE_PRINT_ENV (print that variable's value as a plain line), FAKE_TOKEN_FILE (write
CODEX_API_KEY there), FAKE_REJECT_RESUME (fail like a CLI that does not know the session),
FAKE_LONG_LINE (print a line this long), FAKE_MESSAGE (the agent message to print),
FAKE_VERSION (what --version prints; default a version both providers' checks accept),
FAKE_NO_FLAGS (comma-separated flags --help leaves out), FAKE_WORKER (added to FAKE_LOG lines).
Words of the prompt like ``lines=20 every=0.1`` print that many reasoning items, that far
apart, before the answer (the fleet tests, whose runs cannot carry env).
`--help` lists the flags codexd looks for in both CLIs' help, as they print them.
"""

import json
import os
import sys
import time

HELP = """Usage: fake [OPTIONS] [PROMPT]

Commands:
  resume  Resume a previous session by id

Options:
  -c, --config <key=value>      -m, --model <MODEL>          -s, --sandbox <MODE>
  -C, --cd <DIR>                --json                       --skip-git-repo-check
  --output-schema <FILE>        --add-dir <DIR>              -i, --image <FILE>
  -p, --profile <NAME>          --print                      --output-format <format>
  --verbose                     --json-schema <schema>       --max-budget-usd <amount>
  -r, --resume [value]          --mcp-config <configs...>    --allowedTools <tools...>
  --disallowedTools <tools...>  --append-system-prompt <p>
  --permission-mode <mode>      Permission mode (choices: "acceptEdits", "manual")
"""
if sys.argv[1:2] == ["--version"]:
    print(f"fake-cli {os.environ.get('FAKE_VERSION', '2.1.332')}")
    sys.exit(0)
if "--help" in sys.argv:
    for flag in filter(None, os.environ.get("FAKE_NO_FLAGS", "").split(",")):
        HELP = HELP.replace(flag + " ", "")  # a CLI without these options
    print(HELP)
    sys.exit(0)
prompt = sys.stdin.read()
tag = prompt.strip().split()[0] if prompt.strip() else "?"
log = os.environ.get("FAKE_LOG")


def note(what: str) -> None:
    if log:
        with open(log, "a") as f:
            f.write(f"{what} {tag} {time.time():.6f} {os.environ.get('FAKE_WORKER', '')}\n")


if os.environ.get("FAKE_REJECT_RESUME") and "resume" in sys.argv:
    print("Error: thread not found: no rollout found for that session", file=sys.stderr)
    sys.exit(1)
marker = os.environ.get("FAKE_FAIL_ONCE")
if marker and not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(3)
note("start")
if os.environ.get("FAKE_TOKEN_FILE"):
    with open(os.environ["FAKE_TOKEN_FILE"], "w") as f:
        f.write(os.environ.get("CODEX_API_KEY", ""))
print(json.dumps({"type": "thread.started", "thread_id": "fake-thread-1"}), flush=True)
if os.environ.get("FAKE_PRINT_ENV"):
    print(f"token is {os.environ.get(os.environ['FAKE_PRINT_ENV'], '')}", flush=True)
    print(f"token is {os.environ.get(os.environ['FAKE_PRINT_ENV'], '')}", file=sys.stderr,
          flush=True)
wait = os.environ.get("FAKE_WAIT")
while wait and not os.path.exists(wait):
    time.sleep(0.01)
opts = dict(w.split("=", 1) for w in prompt.split() if "=" in w)
if opts.get("spawn"):  # a grandchild, to show a cancel kills the whole tree
    import subprocess

    child = subprocess.Popen(["sleep", "600"])
    with open(opts["spawn"], "w") as f:
        f.write(f"{os.getpid()} {child.pid}\n")
for i in range(int(opts.get("lines", 0))):
    if "--print" in sys.argv:  # as claude: its stream-json
        print(json.dumps({"type": "assistant", "message": {"id": f"m{i}", "content": [
            {"type": "thinking", "thinking": f"step {i} of {tag}"}]}}), flush=True)
    else:
        print(json.dumps({"type": "item.completed", "item": {
            "id": f"r{i}", "type": "reasoning", "text": f"step {i} of {tag}"}}), flush=True)
    time.sleep(float(opts.get("every", 0.05)))
if os.environ.get("FAKE_LONG_LINE"):
    print("x" * int(os.environ["FAKE_LONG_LINE"]), flush=True)
text = os.environ.get("FAKE_MESSAGE", f"echo: {prompt}")
print(json.dumps({"type": "item.completed",
                  "item": {"id": "i1", "type": "agent_message", "text": text}}), flush=True)
print(json.dumps({"type": "turn.completed", "usage": {"input_tokens": 1}}), flush=True)
note("end")
