"""Nothing acknowledged is ever lost: order streams through storage faults and killed
processes, with a real daemon (``python -m tui.cli --no-ui``), its real workers and a console
attached over the control socket (ARCHITECTURE.md, "Invariants" 1 and 6).

Each test prints one ``DURABILITY`` line with its figures (orders sent / acknowledged / lost /
duplicated, restart times): ``pytest -s tests/test_durability.py`` shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from config import paths as cfg_paths
from core.client import RemoteConsoleClient
from core.models import Direction, Offset, OrderRequest, Status, TradingState
from core.protocol import Reply
from core.reconcile import RECOVERED_FROM_FILLS
from gateways.sim import STATE_FILE_NAME
from gateways.sim_journal import load_state
from storage import AccountDatabase, database_path
from tests.conftest import CoreEnv, pid_alive, wait_until, wait_until_sync
from tests.test_daemon import CONNECTED, Daemon

SYMBOLS = {"P1": "m2705.DCE", "P2": "y2705.DCE"}
# limits wide enough for a stream of orders: the proofs are about storage, not risk rules
RISK = (
    "{max_orders_per_second: 1000, duplicate_window: 0, max_daily_orders: 100000,"
    " max_position_per_contract: 100000, max_active_orders: 1000}"
)


def _accounts(*ids: str) -> str:
    return "".join(
        f"""
  - account_id: {aid}
    gateway: sim
    mode: process
    sim: {{initial_balance: 100000000, seed: {n}, tick_rate: 5.0}}
    watchlist: [{SYMBOLS[aid]}]
    risk: {RISK}
"""
        for n, aid in enumerate(ids, start=1)
    )


def _stop(daemon: Daemon) -> float:
    """SIGTERM the daemon; the seconds it took to exit 0."""
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=15) == 0, daemon.output()[-3000:]
    return time.monotonic() - started


@contextlib.contextmanager
def _daemon(env: CoreEnv) -> Iterator[Daemon]:
    daemon = Daemon(env)
    try:
        yield daemon
    finally:
        daemon.kill()


@contextlib.asynccontextmanager
async def _attached(env: CoreEnv, *ids: str) -> AsyncIterator[RemoteConsoleClient]:
    client = RemoteConsoleClient(cfg_paths.control_socket_path(env.sock_dir), [(a, "sim") for a in ids])
    client.RETRY_SECONDS = 0.1
    await client.connect()
    try:
        await wait_until(lambda: all(client.state(a).ticks for a in ids), 30, f"quotes of {ids}")
        yield client
    finally:
        await client.close()


@dataclass
class Stream:
    """Orders to one account, one after another: buy one lot at the upper limit (it fills),
    then sell it back at the lower one, and so on. Every reply is kept."""

    account_id: str
    sent: int = 0
    acked: list[str] = field(default_factory=list)  # ok: the trader says it is on disk
    refused: list[str] = field(default_factory=list)  # not ok, nothing at the venue
    unknown: list[str] = field(default_factory=list)  # not ok, may be at the venue (lost link...)
    not_sent: int = 0  # refused before any trader saw it
    errors: list[str] = field(default_factory=list)

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.account_id]

    async def one(self, client: RemoteConsoleClient) -> Reply:
        tick = client.state(self.account_id).ticks[self.symbol]
        buy = self.sent % 2 == 0
        req = OrderRequest(
            vt_symbol=self.symbol,
            direction=Direction.LONG if buy else Direction.SHORT,
            offset=Offset.OPEN if buy else Offset.CLOSE,
            price=tick.limit_up if buy else tick.limit_down,
            volume=1,
        )
        self.sent += 1
        reply = await client.send_order(self.account_id, req)
        order_id = str((reply.result or {}).get("order_id") or "") if isinstance(reply.result, dict) else ""
        if reply.ok:
            self.acked.append(order_id)
        else:
            self.errors.append(reply.error)
            if "nothing was sent" in reply.error:  # the trader down, the daemon gone: never left us
                self.not_sent += 1
            elif reply.error.startswith("NOT SAVED") or "outcome unknown" in reply.error:
                self.unknown.append(order_id)  # at the venue or not: no acknowledgement either way
            else:
                self.refused.append(order_id)  # the trader's own refusal, kept as REJECTED
        return reply

    async def run(self, client: RemoteConsoleClient, until: asyncio.Event, pause: float = 0.0) -> None:
        while not until.is_set():
            reply = await self.one(client)
            # 0: let the other streams have the loop; a trader that is down is waited for a little
            await asyncio.sleep(0.02 if "nothing was sent" in reply.error else pause)


@dataclass
class Records:
    """What an account's database and its venue (the sim's state file) hold, read after the
    daemon stopped."""

    orders: dict[str, Status]
    order_msgs: dict[str, str]
    trades: list[tuple[str, str, Direction, float]]  # trade id, order id, direction, volume
    venue_trades: list[tuple[str, str, Direction, float]]
    venue_position: float  # long minus short lots of the symbol

    @property
    def net_from_trades(self) -> float:
        return sum(v if d is Direction.LONG else -v for _, _, d, v in self.trades)


def _records(env: CoreEnv, account_id: str) -> Records:
    with AccountDatabase(database_path(env.data_dir, account_id), readonly=True) as db:
        orders = db.load_orders(limit=1_000_000)
        trades = db.load_trades(limit=1_000_000)
    state, note = load_state(cfg_paths.account_state_dir(env.data_dir, account_id) / STATE_FILE_NAME)
    assert state is not None, note
    symbol = SYMBOLS[account_id]
    net = sum(
        p.volume if p.direction is Direction.LONG else -p.volume
        for p in state.positions
        if p.vt_symbol == symbol
    )
    return Records(
        orders={o.order_id: o.status for o in orders},
        order_msgs={o.order_id: o.status_msg for o in orders},
        trades=[(t.trade_id, t.order_id, t.direction, t.volume) for t in trades],
        venue_trades=[(t.trade_id, t.order_id, t.direction, t.volume) for t in state.trades],
        venue_position=net,
    )


def _check_books(stream: Stream, rec: Records) -> dict[str, int]:
    """The proofs on one account's records; its figures."""
    lost = [oid for oid in stream.acked if oid not in rec.orders]
    assert not lost, f"{stream.account_id}: acknowledged orders not in the database: {lost}"
    twice = [oid for oid, n in Counter(stream.acked).items() if n > 1]
    assert not twice, f"{stream.account_id}: one order acknowledged twice: {twice}"
    # none twice at the venue either: every order the venue filled is one the client sent
    # (acknowledged, or answered 'unknown' when its link dropped), each fill recorded once
    assert sorted(rec.trades) == sorted(rec.venue_trades), "the database's trades are not the venue's"
    filled = {oid for _, oid, _, _ in rec.venue_trades}
    assert len(filled) <= stream.sent
    assert all(oid in rec.orders for oid in filled), "a trade without its order row"
    assert rec.venue_position == rec.net_from_trades, "the position is not the sum of the trades"
    return {
        "sent": stream.sent,
        "acked": len(stream.acked),
        "refused": len(stream.refused),
        "not_sent": stream.not_sent,
        "unknown": len(stream.unknown),
        "lost": len(lost),
        "duplicated": len(twice),
        "trades": len(rec.trades),
    }


def _figures(test: str, **parts: object) -> None:
    print(f"\nDURABILITY {test}: " + "; ".join(f"{k} {v}" for k, v in parts.items()))


# ------------------------------------------------------------------ a disk that fills up


def _worker_pid(client: RemoteConsoleClient, account_id: str) -> int:
    pid = client.state(account_id).pid
    assert pid is not None
    return pid


def _halt_lines(daemon: Daemon, account_id: str) -> list[str]:
    return [ln for ln in daemon.lines if f" {account_id} " in ln and "CRITICAL" in ln and "HALTED" in ln]


async def _halt_said(daemon: Daemon, account_id: str) -> int:
    """Wait for the daemon's line of the account's HALT; the index of the line after it."""
    await wait_until(
        lambda: _halt_lines(daemon, account_id), 10, f"{account_id}'s HALT in the daemon's output"
    )
    line = _halt_lines(daemon, account_id)[0]
    return daemon.lines.index(line) + 1


async def _refusals_said(daemon: Daemon, account_id: str, count: int) -> None:
    """Wait until the daemon has printed the warnings of ``count`` orders refused as HALTED
    (its output reaches us on its own pipe, after the replies)."""
    await wait_until(
        lambda: sum(f" {account_id} " in ln and "rejected: halted" in ln for ln in daemon.lines) >= count,
        10,
        f"{count} refusals of {account_id} in the daemon's output",
    )


def _files_over(pid: int, limit: int) -> None:
    """Lower the running process's file size limit (RLIMIT_FSIZE) to ``limit`` bytes: a write
    past it fails with EFBIG, as on a full disk, for that one process (the same user may)."""
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, limit))


def _by_rlimit(env: CoreEnv, pid: int) -> Callable[[], None]:
    """One account's disk full, made with RLIMIT_FSIZE on its trader process (works for any
    user, in any CI): its database cannot grow, its small files (logs, the sim's journal) can.
    The limit goes with the process."""
    small = [
        *cfg_paths.account_state_dir(env.data_dir, "P1").glob("sim_exchange.json*"),
        *cfg_paths.account_log_dir(env.data_dir, "P1").glob("*.log"),
    ]
    _files_over(pid, max(p.stat().st_size for p in small) + 64 * 1024)
    return lambda: None


def _by_immutable_files(env: CoreEnv, pid: int) -> Callable[[], None]:
    """The database made read-only under its open connection: the files marked immutable
    (``chattr +i``; permission bits would not stop a root process, nor a file already open).
    Needs root and a file system with the flag (ext4, xfs, btrfs)."""
    db = database_path(env.data_dir, "P1")
    files = [str(db), f"{db}-wal"]
    done = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"cannot mark the database immutable here: {done.stderr.strip()}")
    return lambda: subprocess.run(
        ["chattr", "-i", *files], capture_output=True, timeout=10
    ).check_returncode()


@pytest.mark.parametrize("fault", [_by_rlimit, _by_immutable_files], ids=["rlimit", "read-only"])
async def test_a_trader_that_cannot_write_halts_once_loses_nothing_and_others_trade_on(
    core_env: CoreEnv, fault: Callable[[CoreEnv, int], Callable[[], None]]
) -> None:
    """P1's database stops taking writes while it trades (``fault``); P2 trades on. The order
    whose write failed is at the venue: the restart writes it back from its fill."""
    core_env.write_config(_accounts("P1", "P2"))
    undo: Callable[[], None] = lambda: None  # noqa: E731
    with _daemon(core_env) as daemon:
        daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
        async with _attached(core_env, "P1", "P2") as client:
            p1, p2 = Stream("P1"), Stream("P2")
            for _ in range(10):
                assert (await p1.one(client)).ok, p1.errors
                assert (await p2.one(client)).ok, p2.errors
            pid = _worker_pid(client, "P1")
            done = asyncio.Event()
            other = asyncio.create_task(p2.run(client, done, pause=0.01))
            try:
                undo = fault(core_env, pid)
                for _ in range(400):  # the database's WAL passes the limit within a few dozen
                    reply = await p1.one(client)
                    if not reply.ok:
                        break
                first_failure = p1.errors[-1] if p1.errors else ""
                assert "NOT SAVED: the database write failed" in first_failure, p1.errors
                assert "P1 is HALTED" in first_failure
                halted_after = await _halt_said(daemon, "P1")
                for _ in range(5):  # refused: HALTED, each said in its own words, once
                    reply = await p1.one(client)
                    assert not reply.ok and reply.error.startswith("halted: account is HALTED"), reply.error
                await wait_until(lambda: len(p2.acked) >= 30, 30, "P2 trading on")
                await _refusals_said(daemon, "P1", 5)
            finally:
                done.set()
                await other
                undo()
            assert not p2.errors, p2.errors[:3]
            await wait_until(lambda: client.state("P1").info.trading_state is TradingState.HALTED)
            assert "database write failed" in client.state("P1").info.halt_reason

            output = daemon.lines[halted_after:]
            assert len(_halt_lines(daemon, "P1")) == 1, daemon.output()[-3000:]
            noisy = [ln for ln in output if " P1 " in ln and (" ERROR " in ln or " CRITICAL " in ln)]
            assert not noisy, "\n".join(noisy)
            assert not [ln for ln in daemon.lines if "Traceback" in ln or "Logging error" in ln]
            assert not _halt_lines(daemon, "P2")

            # the fault undone, the trader killed: it comes back HALTED (saved, with its
            # reason) and writes back the order whose fill the venue kept
            restart_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            await wait_until(
                lambda: client.state("P1").pid not in (None, pid) and client.state("P1").info.pid != pid,
                30,
                "P1 restarted",
            )
            unsaved = p1.unknown[0]  # the order whose write failed: the venue filled it
            await wait_until(
                lambda: (
                    (o := client.state("P1").orders.get(unsaved)) is not None
                    and o.status_msg == RECOVERED_FROM_FILLS
                ),
                30,
                f"P1 reconciled, writing back order {unsaved}",
            )
            restart_s = time.monotonic() - restart_at
            info = client.state("P1").info
            assert info.trading_state is TradingState.HALTED, "the HALT did not outlive the restart"
            assert "database write failed" in info.halt_reason
        stop_s = _stop(daemon)

    rec1, rec2 = _records(core_env, "P1"), _records(core_env, "P2")
    figures1, figures2 = _check_books(p1, rec1), _check_books(p2, rec2)
    written_back = [oid for oid, msg in rec1.order_msgs.items() if msg == RECOVERED_FROM_FILLS]
    assert written_back == [unsaved]
    assert rec1.orders[unsaved] is Status.ALLTRADED
    _figures(
        fault.__name__.removeprefix("_by_"),
        P1=figures1,
        P2=figures2,
        written_back=len(written_back),
        restart_s=f"{restart_s:.2f}",
        sigterm_exit_s=f"{stop_s:.2f}",
    )


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str) -> Iterator[None]:
    """A tmpfs of ``size`` at ``path``; the test is skipped where mounting is not allowed
    (not root, or a container without the capability): the RLIMIT_FSIZE test above is the
    equivalent that runs everywhere."""
    path.mkdir(mode=0o700)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def _fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to its last byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            with contextlib.suppress(OSError):  # ENOSPC: full, to the size of this chunk
                while os.write(fd, b"\0" * size) == size:
                    pass
    finally:
        os.close(fd)
    return filler


async def test_a_full_tmpfs_halts_the_account_the_halt_survives_a_restart_and_others_trade_on(
    core_env: CoreEnv,
) -> None:
    """P1's files (database, state directory, logs) on a small tmpfs that fills up while it
    trades; P2's on the ordinary disk. The sim's own state (the venue's record) is on the
    full tmpfs too, so only P2's books are compared with its venue here."""
    disk = core_env.root / "p1disk"
    with _small_tmpfs(disk, "16m"):
        core_env.data_dir.mkdir(mode=0o700)
        for sub in ("state", "logs"):
            (disk / sub).mkdir()
            (core_env.data_dir / sub).mkdir(mode=0o700)
            (core_env.data_dir / sub / "P1").symlink_to(disk / sub)
        database_path(core_env.data_dir, "P1").symlink_to(disk / "trading_P1.db")  # SQLite follows it
        core_env.write_config(_accounts("P1", "P2"))
        with _daemon(core_env) as daemon:
            daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
            async with _attached(core_env, "P1", "P2") as client:
                p1, p2 = Stream("P1"), Stream("P2")
                for _ in range(10):
                    assert (await p1.one(client)).ok, p1.errors
                assert (disk / "trading_P1.db-wal").exists(), "the database is not on the tmpfs"
                done = asyncio.Event()
                other = asyncio.create_task(p2.run(client, done, pause=0.01))
                filler = _fill(disk)
                try:
                    for _ in range(2000):  # until the database needs a block it cannot have
                        if not (await p1.one(client)).ok:
                            break
                    assert p1.errors and "NOT SAVED: the database write failed" in p1.errors[-1], p1.errors
                    halted_after = await _halt_said(daemon, "P1")
                    for _ in range(5):
                        reply = await p1.one(client)
                        assert not reply.ok and reply.error.startswith("halted: account is HALTED"), (
                            reply.error
                        )
                    await wait_until(lambda: len(p2.acked) >= 30, 30, "P2 trading on")
                    await _refusals_said(daemon, "P1", 5)
                finally:
                    done.set()
                    await other
                assert not p2.errors, p2.errors[:3]
                assert "database or disk is full" in client.state("P1").info.halt_reason
                assert len(_halt_lines(daemon, "P1")) == 1, daemon.output()[-3000:]
                after = [ln.split(maxsplit=2)[2] for ln in daemon.lines[halted_after:] if " P1 " in ln]
                errors = [text for text in after if text.startswith(("ERROR", "CRITICAL"))]
                # a distinct problem is said once (the sim's journal, the snapshots), never per order
                assert len(errors) == len(set(errors)) <= 3, "\n".join(errors)
                assert not [ln for ln in daemon.lines if "Traceback" in ln or "Logging error" in ln]

                # space back; the trader killed: it comes back HALTED, with its reason
                filler.unlink()
                pid = _worker_pid(client, "P1")
                restart_at = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                await wait_until(
                    lambda: (
                        (i := client.state("P1").info) is not None
                        and i.pid != pid
                        and i.gateway_status.name == "CONNECTED"
                    ),
                    30,
                    "P1 restarted",
                )
                restart_s = time.monotonic() - restart_at
                info = client.state("P1").info
                assert info.trading_state is TradingState.HALTED, "the HALT did not outlive the restart"
                assert "database or disk is full" in info.halt_reason
            stop_s = _stop(daemon)
        rec1 = _records(core_env, "P1")
    lost = [oid for oid in p1.acked if oid not in rec1.orders]
    assert not lost, f"acknowledged orders not in the database: {lost}"
    figures2 = _check_books(p2, _records(core_env, "P2"))
    _figures(
        "tmpfs",
        P1={"sent": p1.sent, "acked": len(p1.acked), "lost": len(lost), "unknown": len(p1.unknown)},
        P2=figures2,
        P1_venue_trades_match=sorted(rec1.trades) == sorted(rec1.venue_trades),
        restart_s=f"{restart_s:.2f}",
        sigterm_exit_s=f"{stop_s:.2f}",
    )


# ------------------------------------------------------------------ killed processes


def _workers_gone(env: CoreEnv, pids: list[int]) -> bool:
    return not any(pid_alive(pid) for pid in pids)


def _trader_pids(daemon: Daemon) -> set[int]:
    """Every trader pid the daemon's status lines named."""
    return {int(m) for ln in daemon.lines for m in re.findall(r" pid (\d+)", ln)}


def _integrity(env: CoreEnv, account_id: str) -> str:
    conn = sqlite3.connect(database_path(env.data_dir, account_id))
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


async def _until_acked(streams: list[Stream], more: int, timeout: float = 60) -> None:
    marks = [len(s.acked) + more for s in streams]
    await wait_until(
        lambda: all(len(s.acked) >= m for s, m in zip(streams, marks, strict=True)),
        timeout,
        f"{more} more acknowledged orders on each of {[s.account_id for s in streams]}",
    )


async def _back(client: RemoteConsoleClient, account_id: str, old_pid: int, started: float) -> float:
    """Seconds from ``started`` until the account trades again under a new trader."""
    await wait_until(
        lambda: (
            (i := client.state(account_id).info) is not None
            and i.pid != old_pid
            and i.gateway_status.name == "CONNECTED"
        ),
        30,
        f"{account_id} back after its trader was killed",
    )
    return time.monotonic() - started


async def test_orders_stream_through_killed_workers_and_a_killed_daemon_and_nothing_is_lost(
    core_env: CoreEnv,
) -> None:
    """Two accounts stream orders; P1's trader is SIGKILLed three times and P2's once while
    they do, then the daemon itself is SIGKILLed (its traders trade on alone), started again
    (it adopts them) and stopped with SIGTERM while the orders still stream."""
    core_env.write_config(_accounts("P1", "P2"))
    streams = [Stream("P1"), Stream("P2")]
    worker_restarts: list[float] = []
    with _daemon(core_env) as daemon:
        daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
        async with _attached(core_env, "P1", "P2") as client:
            done = asyncio.Event()
            tasks = [asyncio.create_task(s.run(client, done, pause=0.002)) for s in streams]
            try:
                for victim in ("P1", "P2", "P1", "P1"):
                    await _until_acked(streams, 15)
                    pid = _worker_pid(client, victim)
                    killed_at = time.monotonic()
                    os.kill(pid, signal.SIGKILL)
                    worker_restarts.append(await _back(client, victim, pid, killed_at))
                await _until_acked(streams, 15)
                orphans = sorted(_worker_pid(client, a) for a in ("P1", "P2"))
                seen_pids = _trader_pids(daemon)
                daemon.proc.kill()  # the daemon SIGKILLed mid-stream
                daemon.proc.wait()
                await wait_until(lambda: not client.attached, 10, "the console noticing")
            finally:
                done.set()
                await asyncio.gather(*tasks)
        assert all(pid_alive(pid) for pid in orphans), "the traders trade on without their daemon"

    adopt_at = time.monotonic()
    with _daemon(core_env) as daemon:
        daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
        async with _attached(core_env, "P1", "P2") as client:
            adopted_s = time.monotonic() - adopt_at
            assert sorted(_worker_pid(client, a) for a in ("P1", "P2")) == orphans, "adopted, not restarted"
            done = asyncio.Event()
            tasks = [asyncio.create_task(s.run(client, done, pause=0.002)) for s in streams]
            try:
                await _until_acked(streams, 15)
                stop_s = _stop(daemon)  # SIGTERM while they stream
                assert not [ln for ln in daemon.lines if "did not stop within" in ln], daemon.output()[-3000:]
                seen_pids |= _trader_pids(daemon)
            finally:
                done.set()
                await asyncio.gather(*tasks)
    assert stop_s < 10, f"SIGTERM took {stop_s:.1f} s"
    # none left: neither the adopted traders nor the starts the new daemon tried while they held the accounts
    wait_until_sync(lambda: _workers_gone(core_env, sorted(seen_pids)), 5, "no trader left after the daemon")
    figures = {}
    for stream in streams:
        assert _integrity(core_env, stream.account_id) == "ok"
        figures[stream.account_id] = _check_books(stream, _records(core_env, stream.account_id))
    _figures(
        "kills",
        **figures,
        worker_restarts_s=[f"{s:.2f}" for s in worker_restarts],
        daemon_adopted_s=f"{adopted_s:.2f}",
        sigterm_exit_s=f"{stop_s:.2f}",
    )


async def test_sigterm_while_orders_stream_exits_0_in_time_with_a_sound_database(core_env: CoreEnv) -> None:
    core_env.write_config(_accounts("P1", "P2"))
    streams = [Stream("P1"), Stream("P2")]
    with _daemon(core_env) as daemon:
        daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
        async with _attached(core_env, "P1", "P2") as client:
            workers = [_worker_pid(client, a) for a in ("P1", "P2")]
            done = asyncio.Event()
            tasks = [asyncio.create_task(s.run(client, done)) for s in streams]
            try:
                await _until_acked(streams, 50)
                stop_s = _stop(daemon)
            finally:
                done.set()
                await asyncio.gather(*tasks)
    assert stop_s < 10, f"SIGTERM took {stop_s:.1f} s"
    wait_until_sync(lambda: _workers_gone(core_env, workers), 5, "no trader left after the daemon")
    figures = {}
    for stream in streams:
        assert _integrity(core_env, stream.account_id) == "ok"
        figures[stream.account_id] = _check_books(stream, _records(core_env, stream.account_id))
    _figures("sigterm", **figures, sigterm_exit_s=f"{stop_s:.2f}")


async def test_a_full_data_directory_halts_every_account_once_stops_cleanly_and_stays_halted(
    core_env: CoreEnv,
) -> None:
    """The whole data directory on a small tmpfs that fills up: the daemon's own log too.
    Every account halts once with the reason, nothing prints a traceback, a SIGTERM on the
    full disk still stops everything cleanly, and the next daemon finds both HALTED."""
    with _small_tmpfs(core_env.data_dir, "16m"):
        core_env.write_config(_accounts("P1", "P2"))
        streams = [Stream("P1"), Stream("P2")]
        with _daemon(core_env) as daemon:
            daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
            async with _attached(core_env, "P1", "P2") as client:
                workers = [_worker_pid(client, a) for a in ("P1", "P2")]
                for stream in streams:
                    for _ in range(6):
                        assert (await stream.one(client)).ok, stream.errors
                _fill(core_env.data_dir)
                for stream in streams:
                    for _ in range(2000):
                        if not (await stream.one(client)).ok:
                            break
                    assert stream.errors and stream.errors[-1].startswith("NOT SAVED"), stream.errors[-3:]
                    for _ in range(3):
                        assert (await stream.one(client)).error.startswith("halted: account is HALTED")
                for aid in ("P1", "P2"):
                    await _halt_said(daemon, aid)
                    await _refusals_said(daemon, aid, 3)
                    assert len(_halt_lines(daemon, aid)) == 1
            stop_s = _stop(daemon)  # the disk still full
        assert stop_s < 10, f"SIGTERM took {stop_s:.1f} s"
        wait_until_sync(lambda: _workers_gone(core_env, workers), 5, "no trader left after the daemon")
        storm = [ln for ln in daemon.lines if "Traceback" in ln or "Logging error" in ln]
        assert not storm, daemon.output()[-3000:]
        assert sum("cannot write" in ln and "runtime.log" in ln for ln in daemon.lines) <= 1
        for stream in streams:
            assert _integrity(core_env, stream.account_id) == "ok"
            with AccountDatabase(database_path(core_env.data_dir, stream.account_id), readonly=True) as db:
                saved = {o.order_id for o in db.load_orders(limit=100_000)}
            assert not [oid for oid in stream.acked if oid not in saved], "an acknowledged order was lost"

        (core_env.data_dir / "filler").unlink()
        restart_at = time.monotonic()
        with _daemon(core_env) as again:
            again.wait_for_accounts(CONNECTED, ("P1", "P2"))
            restart_s = time.monotonic() - restart_at
            for aid in ("P1", "P2"):
                again.wait_for_line(f" {aid} ", timeout=10)
                assert [
                    ln
                    for ln in again.lines
                    if f" {aid} " in ln and "HALTED (database write failed: database or disk is full)" in ln
                ], again.output()
            _stop(again)
    _figures(
        "full_data_dir",
        **{s.account_id: {"sent": s.sent, "acked": len(s.acked), "unknown": len(s.unknown)} for s in streams},
        sigterm_on_full_disk_exit_s=f"{stop_s:.2f}",
        daemon_restart_s=f"{restart_s:.2f}",
    )
