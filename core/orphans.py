"""Traders left without a manager: found, listed, and reached from the command line.

A trader outlives its manager (ARCHITECTURE.md, "Processes"): when a console dies with
its terminal (an SSH session that drops) its traders trade on, retrying their socket
every second. While no core (console or daemon) runs on a data directory,
``qtrader-tui --status`` lists them from their account locks (``state/<ID>/trader.lock``:
who holds it; ``state/<ID>/no_manager_since``: since when it is alone), and
``qtrader-tui --kill`` reaches them through a short-lived manager that adopts them
(listens on their sockets, starting no trader), pulls the kill switch and hangs up.
They stay running, HALTED, until a console or daemon adopts them for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from config import LoadedConfig
from config import paths as cfg_paths
from core.daemon import PidFile
from core.lockfile import lock_holder
from core.manager import TradingManager
from core.protocol import KillRequest, Reply
from core.trader import saved_trading_state
from core.trader_link import ALONE_FILE
from core.trader_process import ACCOUNT_LOCK_FILE

#: How long a trader gets to join the short-lived manager (it retries about every second).
JOIN_TIMEOUT = 10.0


@dataclass(frozen=True)
class Orphan:
    """A live trader of the data directory that no manager reaches."""

    account_id: str
    pid: int
    alone_since: datetime | None  # None: not known (it never said)
    socket_path: Path | None  # where it reconnects, from its command line (None: not known)
    configured: bool  # in the configuration at hand: only then can it be adopted from it
    trading_state: str = "?"  # as it last saved it: ACTIVE, REDUCING, HALTED


def find_orphans(data_dir: Path, configured: Iterable[str]) -> list[Orphan]:
    """Every account of ``data_dir`` whose lock a live trader holds, in account order.
    Meant for when no core runs there: a running core's traders are held the same way."""
    known = set(configured)
    found = []
    for lock in sorted((data_dir / "state").glob(f"*/{ACCOUNT_LOCK_FILE}")):
        pid = lock_holder(lock)
        if pid is None:
            continue
        account_id = lock.parent.name
        saved = saved_trading_state(lock.parent)
        state = "?" if saved is None else saved[0].name + (" (protective kept)" if saved[1] else "")
        found.append(
            Orphan(
                account_id=account_id,
                pid=pid,
                alone_since=_alone_since(lock.parent / ALONE_FILE),
                socket_path=_socket_argument(pid),
                configured=account_id in known,
                trading_state=state,
            )
        )
    return found


def _alone_since(path: Path) -> datetime | None:
    try:
        return datetime.fromisoformat(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _socket_argument(pid: int) -> Path | None:
    """The ``--socket-path`` a trader process was started with (Linux: its command line)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    with contextlib.suppress(ValueError, IndexError):
        return Path(args[args.index("--socket-path") + 1])
    return None


def unreachable(orphan: Orphan, sock_dir: Path) -> str | None:
    """Why this configuration cannot adopt ``orphan`` (None: it can)."""
    if not orphan.configured:
        return "not in this configuration: run qtrader-tui with the config it was started with"
    ours = cfg_paths.trader_socket_path(sock_dir, orphan.account_id)
    if orphan.socket_path is not None and orphan.socket_path != ours:
        return (
            f"it reconnects to {orphan.socket_path}, not {ours}: run qtrader-tui with the socket "
            "directory it was started with"
        )
    return None


async def kill_orphans(loaded: LoadedConfig, data_dir: Path, orphans: list[Orphan]) -> dict[str, Reply]:
    """The kill switch on traders that no manager reaches (everything stopped, as the
    command line's kill switch always does): adopt them, kill, hang up. They stay running,
    HALTED. Raises ``core.daemon.DaemonBusy`` when a core holds the data directory (then it
    is the one to ask)."""
    pid_file = PidFile(data_dir)
    pid_file.acquire()  # no console or daemon starts on the data directory meanwhile
    try:
        manager = TradingManager(loaded.config, config_path=loaded.source, data_dir=data_dir)
        replies: dict[str, Reply] = {}
        reachable = []
        for orphan in orphans:
            why = unreachable(orphan, manager.sock_dir)
            if why is None:
                reachable.append(orphan.account_id)
            else:
                replies[orphan.account_id] = Reply(ok=False, error=f"nothing was sent: {why}")
        try:
            await manager.adopt(reachable)
            deadline = time.monotonic() + JOIN_TIMEOUT
            while (
                any(p.link is None and p.foreign is None for p in manager.proxies.values())
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)
            joined = [a for a, p in manager.proxies.items() if p.link is not None]
            for account_id, proxy in manager.proxies.items():
                if proxy.link is None and proxy.foreign is not None:
                    replies[account_id] = Reply(
                        ok=False,
                        error=f"nothing was sent: the trader (pid {proxy.foreign[0]}) that joined "
                        f"at {proxy.socket_path} is not this configuration's: {proxy.foreign[1]}",
                    )
                elif proxy.link is None:
                    replies[account_id] = Reply(
                        ok=False,
                        error=f"nothing was sent: the trader did not join within {JOIN_TIMEOUT:g} s "
                        f"at {proxy.socket_path}",
                    )
            killed = await asyncio.gather(*(manager.request(a, "kill_req", KillRequest()) for a in joined))
            replies.update(zip(joined, killed, strict=True))
        finally:
            await manager.detach()
        return {o.account_id: replies[o.account_id] for o in orphans}
    finally:
        pid_file.release()
