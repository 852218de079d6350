"""Print every atom change other clients make, until interrupted.

    .venv/bin/python clients/watch_atoms.py [--socket PATH] [--prefix ui.]
"""

from __future__ import annotations

import argparse

import trio

from codexd.client import open_client


async def watch(socket: str | None, prefix: str) -> None:
    async with open_client(socket, client_name="watch-atoms") as client:
        listing = await client.call("atom/list", {"prefix": prefix})
        for atom in listing["atoms"]:
            print(f"{atom['key']} = {atom['value']!r} (revision {atom['revision']})")
        async for note in client.notifications():
            if note.method == "atom/changed" and note.params["key"].startswith(prefix):
                p = note.params
                state = "deleted" if p["deleted"] else f"= {p['value']!r}"
                print(f"{p['key']} {state} (revision {p['revision']})", flush=True)
            elif note.method == "daemon/shuttingDown":
                print(f"daemon stopping: {note.params['reason']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket")
    ap.add_argument("--prefix", default="")
    args = ap.parse_args()
    trio.run(watch, args.socket, args.prefix)


if __name__ == "__main__":
    main()
