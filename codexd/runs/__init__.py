"""Provider runs: a durable queue of `codex exec` and `claude -p` runs."""
