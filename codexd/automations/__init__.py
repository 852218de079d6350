"""Automations: scheduled Codex work, its runs and the inbox they report to."""
