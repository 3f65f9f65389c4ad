"""Headless runner: ``qtrader-tui --no-ui``.

Runs the manager and its traders with no Textual at all, prints concise status
lines (connections, orders, fills, triggers, errors) to stdout and the runtime
log, holds a pid file so a second daemon cannot run on the same data
directory, and stops cleanly on SIGTERM/SIGINT: traders are asked to shut down
(optionally cancelling working orders), databases are flushed, exit code 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from config import ConfigError, LoadedConfig, PublishConfig
from core.aggregator import Change, DataAggregator
from core.control import ServedManager
from core.lockfile import LockHeld, PidLock, UnsafeLockFile
from core.logs import setup_runtime_logging
from core.manager import TradingManager
from core.models import Direction, Status, now
from core.sessions import trading_day_of

log = logging.getLogger("qtrader.daemon")

SUMMARY_INTERVAL = 60.0
#: A status line's text is cut here: what it quotes comes from a trader process's messages.
MAX_LINE_CHARS = 400
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ALREADY_RUNNING = 3


class DaemonBusy(RuntimeError):
    """Another daemon (or console) already runs on this data directory."""


class PidFile(PidLock):
    """``<data_dir>/qtrader.pid``, locked for as long as the daemon (or console) runs."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir / "qtrader.pid", mode=0o644, remove_on_release=True)

    def acquire(self) -> None:
        try:
            super().acquire()
        except LockHeld as exc:
            raise DaemonBusy(f"qtrader already runs on {self.path.parent} (pid {exc.holder})") from None


class StatusPrinter:
    """Turns aggregator changes into one-line status messages (never ticks)."""

    def __init__(self, aggregator: DataAggregator, out: TextIO | None) -> None:
        self.aggregator = aggregator
        self.out = out
        self._order_status: dict[tuple[str, str], Status] = {}
        self._trades = self._triggers = self._logs = 0
        self._last_status: dict[str, tuple[str, str, int | None, str]] = {}

    def line(self, account_id: str, text: str) -> None:
        """Print and log one line. A terminal that went away (SSH dropped, the reading end of a
        pipe closed) must never stop the daemon: printing stops, the runtime log goes on.

        The text quotes what traders sent (symbols, messages, references: whatever process
        registered for the account), so it is made one printable line first: no line break
        or control character of theirs can forge a line of ours (``one_line``)."""
        account_id, text = one_line(account_id, 32), one_line(text, MAX_LINE_CHARS)
        log.info("%s %s", account_id, text)
        if self.out is None:
            return
        stamp = f"{now():%H:%M:%S}"  # exchange time, as the console and the logs (the zone: start line)
        try:
            print(f"{stamp} {account_id:<6} {text}", file=self.out, flush=True)
        except (OSError, ValueError) as exc:  # BrokenPipeError, EIO on a hung-up tty, closed file
            self.out = None
            log.warning("stdout is gone (%s): status lines continue in the runtime log only", exc)

    def __call__(self, change: Change) -> None:
        state = self.aggregator.states[change.account_id]
        aid = change.account_id
        kind = change.kind
        if kind == "status":
            info = state.info
            trading = info.trading_state.name if info is not None and state.pid is not None else ""
            if trading and info is not None and info.halt_reason:
                trading += f" ({info.halt_reason})"
            now = (state.status.name, state.status_message, state.pid, trading)
            last = self._last_status.get(aid)
            self._last_status[aid] = now
            # a pid going away says nothing by itself: the status that follows does
            if last is not None and now[:2] == last[:2] and (state.pid is None or now[2:] == last[2:]):
                return
            text = f"{state.status.name:<12} {state.gateway}"
            if state.pid is not None:
                text += f" pid {state.pid} {trading}".rstrip()
            if state.status_message:
                text += f" - {state.status_message}"
            self.line(aid, text)
        elif kind == "order":
            order = state.orders.get(change.key)
            if order is None:
                return
            key = (aid, order.order_id)
            if self._order_status.get(key) is order.status:
                return
            self._order_status[key] = order.status
            if not order.is_active:
                self._order_status.pop(key, None)
            side = "BUY" if order.direction is Direction.LONG else "SELL"
            text = (
                f"ORDER {order.order_id} {order.status.name} {side} {order.offset.name} "
                f"{order.vt_symbol} {order.traded:g}/{order.volume:g} @ {order.price:g}"
            )
            if order.status_msg:
                text += f" - {order.status_msg}"
            self.line(aid, text)
        elif kind == "trade":
            trade = state.trades[-1]
            side = "BUY" if trade.direction is Direction.LONG else "SELL"
            self.line(
                aid,
                f"FILL  {side} {trade.offset.name} {trade.vt_symbol} {trade.volume:g} @ {trade.price:g}"
                f" ({trade.reference})",
            )
        elif kind == "trigger":
            trig = state.triggers[-1]
            self.line(aid, f"TRIGGER {trig.instance}: {trig.condition} -> {trig.action} {trig.result}")
        elif kind == "log":
            entry = state.logs[-1]
            self.line(aid, f"{entry.level} {entry.message}")

    def summary(self) -> None:
        for aid, state in self.aggregator.states.items():
            acc = state.account
            funds = f"balance {acc.balance:,.2f} available {acc.available:,.2f}" if acc else "no account yet"
            self.line(
                aid,
                f"SUMMARY {state.status.name} {funds}, {len(state.positions)} positions, "
                f"{len(state.working_orders)} working orders, {len(state.ticks)} quotes, "
                f"{state.restarts} restarts",
            )


def one_line(text: str, limit: int) -> str:
    """``text`` as one printable line of at most about ``limit`` characters: line breaks,
    control and other unprintable characters (escape sequences, U+2028...) are shown
    escaped (``\\n``, ``\\x1b``), and what is past ``limit`` is cut with a note."""
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


async def run_daemon(
    loaded: LoadedConfig,
    *,
    data_dir: Path,
    cancel_on_exit: bool = False,
    out: TextIO = sys.stdout,
    publish: PublishConfig | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code. ``publish`` (else the
    config's ``publish:``): mirror the accounts onto that Redis (core/redis_publish.py)."""
    pid_file = PidFile(data_dir)
    try:
        pid_file.acquire()
    except DaemonBusy as exc:
        print(f"qtrader-tui: {exc}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    except UnsafeLockFile as exc:
        print(f"qtrader-tui: {exc}", file=sys.stderr)
        return EXIT_FAILED
    setup_runtime_logging(data_dir, loaded.config.log.level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # a closed terminal or a dropped SSH session must not stop trading: SIGHUP is noted, not obeyed
    loop.add_signal_handler(signal.SIGHUP, lambda: log.warning("SIGHUP (terminal hung up): running on"))
    try:
        return await _serve(
            loaded,
            data_dir=data_dir,
            stop=stop,
            cancel_on_exit=cancel_on_exit,
            out=out,
            publish=publish or loaded.config.publish,
        )
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        pid_file.release()


async def _serve(
    loaded: LoadedConfig,
    *,
    data_dir: Path,
    stop: asyncio.Event,
    cancel_on_exit: bool,
    out: TextIO,
    publish: PublishConfig | None = None,
) -> int:
    """The manager and the control socket, from start until ``stop`` is set, then a clean stop."""
    try:
        manager = TradingManager(loaded.config, config_path=loaded.source, data_dir=data_dir)
    except (ConfigError, OSError) as exc:  # e.g. an unusable socket directory
        print(f"qtrader-tui: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    printer = StatusPrinter(manager.aggregator, out)
    manager.aggregator.subscribe(printer)
    for warning in loaded.warnings:
        printer.line("config", warning)
    accounts = ", ".join(a.account_id for a in loaded.config.accounts if a.enabled)
    printer.line(
        "daemon",
        f"pid {os.getpid()} data {data_dir} config {loaded.source} accounts {accounts}; "
        f"times are exchange time (CST, UTC+8), trading day {trading_day_of(now()):%Y-%m-%d}",
    )
    core = ServedManager(manager)
    publisher = None
    if publish is not None:  # claimed before any trader starts: a taken account refuses here
        from core.redis_publish import AccountTaken, RedisPublisher

        publisher = RedisPublisher(
            manager, core.control, publish, say=lambda text: printer.line("redis", text)
        )
        try:
            await publisher.claim()
        except AccountTaken as exc:
            printer.line("daemon", f"cannot start: {exc}")
            return EXIT_FAILED
    try:
        await core.start()  # whatever did start is stopped again when a part fails
    except Exception as exc:  # e.g. another manager serves the sockets
        log.exception("manager failed to start")
        printer.line("daemon", f"cannot start: {exc}")
        return EXIT_FAILED
    printer.line("daemon", f"control socket {core.path} (qtrader-tui --kill ACCOUNT|all)")
    if publisher is not None:
        publisher.start()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), SUMMARY_INTERVAL)
        except TimeoutError:
            printer.summary()
    printer.line("daemon", "stopping: traders are shutting down")
    started = time.monotonic()
    if publisher is not None:
        await publisher.stop()
    await core.stop(cancel_orders=cancel_on_exit)
    printer.line("daemon", f"stopped cleanly in {time.monotonic() - started:.1f} s")
    return EXIT_OK
