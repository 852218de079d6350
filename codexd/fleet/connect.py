"""The Temporal client, as ``[runs.executor]`` describes it (runs on the asyncio side)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING

from codexd.config import ExecutorSection

if TYPE_CHECKING:
    from temporalio.client import Client


class Unreachable(Exception):
    """The Temporal server cannot be reached or refused us; the message says what to do."""


def _read(path: str) -> bytes | None:
    return open(os.path.expanduser(path), "rb").read() if path else None


async def client(cfg: ExecutorSection, *, identity: str | None = None) -> Client:
    """Connect within ``cfg.connect_timeout_seconds``; raises :class:`Unreachable`."""
    import asyncio

    from temporalio.client import Client
    from temporalio.service import RetryConfig, TLSConfig

    tls: bool | TLSConfig = False
    try:
        if cfg.tls or cfg.tls_ca or cfg.tls_cert:
            tls = TLSConfig(server_root_ca_cert=_read(cfg.tls_ca),
                            client_cert=_read(cfg.tls_cert),
                            client_private_key=_read(cfg.tls_key),
                            domain=cfg.tls_server_name or None)
    except OSError as exc:
        raise Unreachable(f"cannot read a TLS file of [runs.executor]: {exc}") from None
    api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    if cfg.api_key_env and not api_key:
        raise Unreachable(f"runs.executor.api_key_env names {cfg.api_key_env}, which is not "
                          "set in codexd's environment")
    try:
        return await asyncio.wait_for(Client.connect(
            cfg.address, namespace=cfg.namespace, tls=tls if api_key is None else (tls or True),
            api_key=api_key, identity=identity,
            retry_config=RetryConfig(max_retries=2, initial_interval_millis=100,
                                     max_interval_millis=1000,
                                     max_elapsed_time_millis=int(
                                         cfg.connect_timeout_seconds * 1000))),
            timeout=cfg.connect_timeout_seconds)
    except TimeoutError:
        raise Unreachable(f"the Temporal server at {cfg.address} did not answer within "
                          f"{cfg.connect_timeout_seconds:g} s (runs.executor.address); start "
                          "it, or run on this machine with executor \"local\"") from None
    except Exception as exc:
        raise Unreachable(f"cannot connect to the Temporal server at {cfg.address} "
                          f"(namespace {cfg.namespace}): {exc}; check runs.executor.address "
                          "and its TLS settings, or run with executor \"local\"") from None


RPC_TIMEOUT = timedelta(seconds=10)
