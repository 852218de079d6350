"""codexd's GIT_ASKPASS / SSH_ASKPASS helper: asks the daemon for a credential of a git job.

git runs it with the prompt as its argument and reads the answer from stdout; exit status 1 (the
prompt declined or expired) makes git fail the operation, with the daemon recording why.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    from codexd.client import Client, DaemonUnreachable
    from codexd.errors import RpcError
    from codexd.protocol.git import GIT_ASKPASS, AskpassParams

    args = sys.argv[1:] if argv is None else argv
    prompt = " ".join(args)
    job, secret = os.environ.get("CODEXD_GIT_JOB"), os.environ.get("CODEXD_GIT_SECRET")
    socket = os.environ.get("CODEXD_SOCKET")
    if not (job and secret and socket):
        print("codexd askpass: not started by codexd for a git job", file=sys.stderr)
        return 1
    try:
        with Client.connect(socket, client_name="codexd-askpass", timeout=None) as c:
            answer = c.request(GIT_ASKPASS, AskpassParams(job_id=job, secret=secret,
                                                          prompt=prompt))
    except (RpcError, DaemonUnreachable, OSError) as exc:
        print(f"codexd askpass: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(answer.value + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
