"""The daemon's control socket: ``<socket_dir>/control.sock``.

Same framing and typed messages as the trader links (core/protocol.py), same
privacy (0600, peers of another uid refused). Requests answered here, one
reply each:

- ``kill_req`` - the kill switch; the envelope's ``account_id`` names the
  account, empty for every account;
- ``state_req`` - set an account's trading state (e.g. resume: ACTIVE);
- ``status_req`` - every account's status line.

``qtrader-tui --kill DQ1`` / ``--kill all`` is the command-line client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any

from core.manager import TradingManager
from core.protocol import Empty, Link, Message, ProtocolError, Reply, StateRequest, peer_credentials

log = logging.getLogger("qtrader.control")


class ControlServer:
    """Serves operator commands to a running daemon."""

    def __init__(self, manager: TradingManager, path: Path) -> None:
        self.manager = manager
        self.path = path
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        if self.path.exists():
            self.path.unlink()  # the pid file lock guarantees no other daemon owns it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        creds = peer_credentials(writer)
        if creds is not None and creds[1] != os.getuid():
            log.warning("control: refused uid %d (pid %d)", creds[1], creds[0])
            writer.close()
            return
        link = Link(
            reader, writer, account_id="daemon", max_frame_bytes=self.manager.config.socket.max_frame_bytes
        )
        try:
            while True:
                try:
                    msg = await link.recv()
                except ProtocolError as exc:
                    if exc.fatal:
                        return
                    if exc.req_id is not None:
                        link.send_nowait(
                            "reply", Reply(ok=False, error=f"request refused: {exc}"), exc.req_id
                        )
                    continue
                try:
                    reply = await self._handle(msg)
                except Exception as exc:  # one reply per request, even for our own bug
                    log.exception("control: %s failed", msg.type)
                    reply = Reply(ok=False, error=f"internal error in {msg.type}: {exc}")
                link.send_nowait("reply", reply, msg.req_id)
        except ConnectionError:
            pass
        finally:
            await link.close()

    async def _handle(self, msg: Message) -> Reply:
        mgr = self.manager
        if msg.type == "kill_req":
            target = msg.account_id or None
            if target is not None and target not in mgr.proxies:
                return Reply(
                    ok=False, error=f"no running account '{target}' (running: {', '.join(mgr.proxies)})"
                )
            log.critical("control: KILL SWITCH for %s", target or "all accounts")
            replies = await mgr.kill_switch(target)
            failed = [f"{a}: {r.error}" for a, r in replies.items() if not r.ok]
            result: dict[str, Any] = {a: r.result for a, r in replies.items()}
            return Reply(ok=not failed, error="; ".join(failed), result=result)
        if msg.type == "state_req" and isinstance(msg.data, StateRequest):
            return await mgr.set_trading_state(msg.account_id, msg.data.state)
        if msg.type == "status_req":
            return Reply(ok=True, result={a: _status(mgr, a) for a in mgr.account_ids})
        return Reply(
            ok=False, error=f"'{msg.type}' is not a control request (kill_req, state_req, status_req)"
        )


def _status(mgr: TradingManager, account_id: str) -> dict[str, Any]:
    state = mgr.state(account_id)
    info = state.info
    return {
        "status": state.status.name,
        "message": state.status_message,
        "trading_state": info.trading_state.name if info else None,
        "working_orders": len(state.working_orders),
        "positions": len(state.positions),
        "strategies_running": sum(s.running for s in state.strategies.values()),
    }


async def send_control(
    path: Path, msg_type: str, data: Any, account_id: str = "", timeout: float = 15.0
) -> Reply:
    """One request to a running daemon (the command-line client)."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError as exc:
        return Reply(ok=False, error=f"no daemon listening at {path} ({exc.strerror or exc})")
    link = Link(reader, writer, account_id=account_id)
    try:
        link.send_nowait(msg_type, data if data is not None else Empty(), 1)
        msg = await asyncio.wait_for(link.recv(), timeout)
        reply = msg.data
        return reply if isinstance(reply, Reply) else Reply(ok=False, error=f"unexpected answer '{msg.type}'")
    except (TimeoutError, ConnectionError, ProtocolError) as exc:
        return Reply(ok=False, error=f"the daemon did not answer: {exc or type(exc).__name__}")
    finally:
        await link.close()
