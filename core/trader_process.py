"""The trader as an OS process: ``qtrader-trader`` (or ``python -m core.trader``).

Started three ways: by the manager, which passes the account's socket (``--socket-path``);
by hand, to join a running manager (the socket then comes from the config); standalone with
no manager (``--mode standalone``), logging to the terminal. The exit code tells the manager
what to do next (``EXIT_*``). ``AccountLock`` keeps every account to one trader, whichever
way it runs (an embedded trader takes it too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from config import ConfigError, load_config
from config import paths as cfg_paths
from core.lockfile import LockHeld, PidLock, UnsafeLockFile
from core.logs import setup_trader_logging

if TYPE_CHECKING:
    from core.trader import Trader

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_ALREADY_RUNNING = 3
#: The venue refused the login (or could not be reached): restart on the venue back-off.
EXIT_VENUE_REFUSED = 4
#: In the account's state directory: held (flock) by the account's trader while it runs.
ACCOUNT_LOCK_FILE = "trader.lock"


class AccountBusy(RuntimeError):
    """Another trader process holds this account."""


class AccountLock(PidLock):
    """``<state_dir>/trader.lock``: one trader per account."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / ACCOUNT_LOCK_FILE)

    def acquire(self) -> None:
        """Raise AccountBusy naming the holder when another trader has the account."""
        try:
            super().acquire()
        except LockHeld as exc:
            raise AccountBusy(f"another trader already runs this account (pid {exc.holder})") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qtrader-trader", description="Run one account's trader.")
    p.add_argument("--account-id", required=True, help="account to run (from the config)")
    p.add_argument("--config", help="config file (default: see README, config resolution)")
    p.add_argument("--data-dir", help="data directory (databases, logs, state)")
    p.add_argument("--socket-path", help="manager socket to join (default: from the config)")
    p.add_argument(
        "--mode",
        choices=["managed", "standalone"],
        default="managed",
        help="standalone: no manager, log to the terminal",
    )
    p.add_argument(
        "--orphan-timeout",
        type=float,
        default=0.0,
        help="stop after this many seconds without a manager (0: never)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one account's trader until it is stopped; returns the process exit code."""
    # here, not at the top: core.trader imports this module (``main`` is its entry point too)
    from core.trader import Trader

    args = build_parser().parse_args(argv)
    try:
        # only this account's secrets are in our environment (core/supervisor.py)
        loaded = load_config(args.config, for_account=args.account_id)
    except ConfigError as exc:
        print(f"qtrader-trader: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    app = loaded.config
    account = next((a for a in app.accounts if a.account_id == args.account_id), None)
    if account is None:
        known = ", ".join(a.account_id for a in app.accounts)
        print(
            f"qtrader-trader: {loaded.source.name}: no account '{args.account_id}' (configured: {known})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    os.umask(cfg_paths.PRIVATE_UMASK)
    try:
        data_dir = cfg_paths.secure_data_dir(cfg_paths.data_dir(app, args.data_dir))
    except ConfigError as exc:
        print(f"qtrader-trader: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    standalone = args.mode == "standalone"
    setup_trader_logging(data_dir, account.account_id, app.log.level, to_terminal=standalone)
    socket_path: Path | None = None
    if not standalone:
        socket_path = (
            Path(args.socket_path).resolve()  # before the chdir below
            if args.socket_path
            else cfg_paths.trader_socket_path(cfg_paths.socket_dir(app), account.account_id)
        )
    # vnpy picks its working folder from the current directory at import time:
    # give every account its own before any gateway is imported.
    state_dir = cfg_paths.account_state_dir(data_dir, account.account_id)
    (state_dir / ".vntrader").mkdir(parents=True, exist_ok=True)
    os.chdir(state_dir)
    trader = Trader(
        account,
        app,
        data_dir=data_dir,
        socket_path=socket_path,
        orphan_timeout=args.orphan_timeout,
        config_path=loaded.source,
    )
    trader.freeze_gc = True
    return asyncio.run(_run_process(trader))


async def _run_process(trader: Trader) -> int:
    """Run ``trader`` until SIGTERM/SIGINT or a shutdown; its outcome as an exit code."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, trader.stop)
    try:
        await trader.run()
    except AccountBusy as exc:
        print(f"qtrader-trader {trader.account_id}: {exc}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    except UnsafeLockFile as exc:
        print(f"qtrader-trader {trader.account_id}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if trader.fatal is not None:
        print(f"venue refused: {trader.fatal}", file=sys.stderr)  # the manager's crash reason
        return EXIT_VENUE_REFUSED
    return EXIT_OK
