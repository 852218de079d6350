"""What a diagnostics bundle is made of that both the daemon and codexctl compute: versions
and the database's table sizes (counts only, never contents)."""

from __future__ import annotations

import apsw

from codexd import __version__
from codexd.store.db import scalar

#: The distributions whose versions a bundle reports.
DISTRIBUTIONS = ("trio", "trio-websocket", "apsw", "msgspec", "structlog", "keyring", "tomlkit",
                 "ptyprocess", "prometheus-client", "jeepney", "httpx", "watchfiles")


def versions(appserver: str | None = None) -> dict[str, str]:
    """codexd's version and those of what it runs on."""
    import platform
    from importlib import metadata

    out = {"codexd": __version__, "python": platform.python_version(),
           "platform": platform.platform(), "sqlite": apsw.sqlite_lib_version()}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    if appserver:
        out["codex app-server"] = appserver
    return out


def table_sizes(conn: apsw.Connection) -> dict[str, int]:
    """Rows per table."""
    names = [str(r[0]) for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]
    return {n: scalar(conn, f'SELECT count(*) FROM "{n}"') for n in names}
