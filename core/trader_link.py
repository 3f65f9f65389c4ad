"""The trader's side of its link to the manager.

The trader is a client of ``<socket_dir>/trader-<ID>.sock``: it connects, sends ``register``
and a full ``snapshot``, then streams its changes and answers requests, one ``reply`` each.
When the manager goes away it keeps trading and reconnects by itself (with an orphan
timeout, it stops after that long alone); while it has no manager, ``<state_dir>/no_manager_since``
says since when (``--status`` lists such traders, core/orphans.py). A manager that stops reading cannot fill the
trader's memory: past ``BACKLOG_LIMIT`` queued bytes, what the next update replaces anyway
(quotes, positions, the account) is dropped; orders, trades and replies always go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import AppConfig
from core.models import LogEntry, TraderInfo, now
from core.protocol import (
    Link,
    Message,
    MessageType,
    Outgoing,
    ProtocolError,
    Reply,
    Snapshot,
    fit_snapshot,
    peer_credentials,
)

if TYPE_CHECKING:
    from core.trader import Trader

BACKLOG_LIMIT = 8 * 1024 * 1024  # bytes queued to a manager that is not reading
_REPLACEABLE: frozenset[MessageType] = frozenset({"tick", "position", "account", "heartbeat", "equity"})
RECONNECT_MAX_DELAY = 1.0
#: A link that ends this soon after our register was a hang-up (a manager that does not adopt
#: us, core/manager.py): retry no faster than every RECONNECT_MAX_DELAY, never in a tight loop.
HUNG_UP_WITHIN = 2.0
#: In the account's state directory while the trader has no manager: since when (ISO time).
ALONE_FILE = "no_manager_since"


class LinkLogHandler(logging.Handler):
    """Forwards the trader's WARNING+ log records to the manager as ``log`` messages."""

    def __init__(self, trader: Trader) -> None:
        super().__init__(logging.WARNING)
        self.trader = trader

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = LogEntry(
                account_id=self.trader.account_id,
                datetime=now(),
                level=record.levelname,
                message=record.getMessage(),
                source=record.name.rsplit(".", 1)[-1],
            )
            self.trader.emit("log", entry)
        except Exception:  # a log handler must never raise into the caller
            self.handleError(record)


class ManagerLink:
    """Mixed into ``Trader``: its connection to the manager, and how messages leave on it."""

    if TYPE_CHECKING:  # provided by Trader
        account_id: str
        app: AppConfig
        log: logging.Logger
        state_dir: Path
        socket_path: Path | None
        orphan_timeout: float
        link: Link | None
        _stop: asyncio.Event
        _dropping: bool

        def info(self) -> TraderInfo: ...
        def snapshot(self) -> Snapshot: ...
        def stop(self, *, cancel_orders: bool = False) -> None: ...
        def emit(self, msg_type: MessageType, data: Any) -> None: ...
        def _dispatch(self, link: Link, msg: Message) -> None: ...

    async def _manager_loop(self) -> None:
        assert self.socket_path is not None
        delay = 0.05
        lost_since = time.monotonic()
        turned_away = False
        self._alone(True)
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
            except OSError:
                if self.orphan_timeout and time.monotonic() - lost_since > self.orphan_timeout:
                    self.log.warning("no manager for %.0f s: stopping", self.orphan_timeout)
                    self.stop()
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            creds = peer_credentials(writer)
            if creds is not None and creds[1] != os.getuid():
                self.log.error("refusing a manager of uid %d at %s", creds[1], self.socket_path)
                writer.close()
                await asyncio.sleep(RECONNECT_MAX_DELAY)
                continue
            delay = 0.05
            connected_at = time.monotonic()
            link = Link(
                reader, writer, account_id=self.account_id, max_frame_bytes=self.app.socket.max_frame_bytes
            )
            self.link = link
            try:
                link.send_nowait("register", self.info())
                snapshot, note = fit_snapshot(self.snapshot(), self.app.socket.max_frame_bytes // 2)
                if note:
                    self.log.warning("%s", note)
                link.send_nowait("snapshot", snapshot)
                self.log.info("connected to manager at %s", self.socket_path)
                self._alone(False)
                await self._serve(link)
            except ProtocolError as exc:
                self.log.error("manager link: %s; reconnecting", exc)
            except ConnectionError:
                if time.monotonic() - connected_at >= HUNG_UP_WITHIN:
                    turned_away = False
                    self.log.warning("manager went away; trading on and reconnecting")
                elif not turned_away:  # said once: it knocks again every second
                    turned_away = True
                    self.log.warning(
                        "the manager at %s hung up as soon as we registered (it does not adopt this "
                        "trader: see its log); trading on, retrying every %g s",
                        self.socket_path,
                        RECONNECT_MAX_DELAY,
                    )
            except Exception:  # a bug must cost this connection, never the trader's link for good
                self.log.exception("manager link failed; reconnecting")
                await asyncio.sleep(RECONNECT_MAX_DELAY)
            finally:
                self.link = None
                await link.close()
                lost_since = time.monotonic()
                self._alone(True)
            if lost_since - connected_at < HUNG_UP_WITHIN:
                await asyncio.sleep(RECONNECT_MAX_DELAY)

    def _alone(self, alone: bool) -> None:
        """Say (in the state directory) whether, and since when, no manager reaches us."""
        path = self.state_dir / ALONE_FILE
        try:
            if alone:
                path.write_text(now().isoformat(timespec="seconds") + "\n")
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:  # a note for --status: never worth more than a warning
            self.log.warning("cannot update %s: %s", path, exc)

    async def _serve(self, link: Link) -> None:
        """Answer the manager's requests until the link fails (fatal errors propagate)."""
        while True:
            try:
                msg = await link.recv()
            except ProtocolError as exc:
                if exc.fatal:
                    raise
                # the stream is intact: refuse this one request, readably, and carry on
                self.log.error("bad request from manager: %s", exc)
                if exc.req_id is not None:
                    link.send_nowait("reply", Reply(ok=False, error=f"request refused: {exc}"), exc.req_id)
                continue
            self._dispatch(link, msg)

    def _send(self, messages: list[Outgoing]) -> None:
        link = self.link
        if not messages or link is None or link.closed:
            return
        if link.backlog > BACKLOG_LIMIT:
            # the manager has stopped reading (suspended?): drop what the next update
            # replaces anyway; orders, trades and replies always go
            kept = [m for m in messages if m[0] not in _REPLACEABLE]
            if len(kept) < len(messages) and not self._dropping:
                self._dropping = True
                self.log.warning("manager is not reading (%d bytes queued): dropping quotes", link.backlog)
            messages = kept
        elif self._dropping:
            self._dropping = False
            self.log.warning("manager is reading again")
        try:
            link.send_many(messages)
        except ConnectionError:
            pass

    async def _heartbeat_loop(self) -> None:
        interval = self.app.manager.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            self.emit("heartbeat", self.info())
