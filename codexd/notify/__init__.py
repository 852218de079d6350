"""Notifications: events that reach a person through a program, the desktop or a webhook
(codexd.notify.service; what they say: codexd.notify.payloads; where they go:
codexd.notify.channels)."""
