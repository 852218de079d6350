"""Command-line entry points: ``codexd`` (the daemon) and ``codexctl`` (the control client)."""
