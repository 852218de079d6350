"""codexd: a per-user daemon that supervises `codex app-server` and shares it between clients."""

__version__ = "0.1.0"
