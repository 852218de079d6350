"""PTY terminal sessions that outlive their clients (:class:`TerminalHost`)."""
