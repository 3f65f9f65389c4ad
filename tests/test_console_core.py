"""The plain console's in-process core, as an operator runs it: ``qtrader-tui`` in a terminal
(a pseudo-terminal here), reached from another shell through its control socket; its
traders left running when it dies with its terminal, listed, killed and adopted."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from config import paths as cfg_paths
from core.client import RemoteConsoleClient
from core.control import send_control
from core.lockfile import lock_holder
from core.models import Direction, Offset, OrderRequest, TraderStatus, TradingState
from core.protocol import Empty
from tests.conftest import CoreEnv, pid_alive, sim_account, wait_until

ACCOUNTS = sim_account("C1", "m2705.DCE", seed=4) + sim_account("C2", "i2705.DCE", seed=5)
IDS = ("C1", "C2")


class PtyConsole:
    """``qtrader-tui`` on a pseudo-terminal of 160 x 45; what it draws is read and dropped."""

    def __init__(self, env: CoreEnv) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 160, 0, 0))
        self.master = master
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "--config", str(env.config_path)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "45"},
            start_new_session=True,
        )
        os.close(slave)
        self.drawn = 0
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.drawn += len(chunk)

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def quit(self, timeout: float = 30) -> int:
        """q, then y once the confirmation has armed (a fresh press every 0.4 s until it
        counts: the dialog ignores keys until it has been shown for a while)."""
        self.press("q")
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("the console did not quit")
            time.sleep(0.4)
            self.press("y")
        return self.proc.returncode

    def kill(self) -> None:
        """As a dropped SSH session leaves it: the console gone, nothing cleaned up."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            os.close(self.master)


def _control(env: CoreEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--config", str(env.config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _status(path: Path) -> dict[str, dict[str, object]]:
    reply = await send_control(path, "status_req", Empty(), timeout=5)
    return reply.result if reply.ok and isinstance(reply.result, dict) else {}


async def _all_connected(path: Path, timeout: float = 60) -> None:
    """Wait until the core behind ``path`` answers with every account CONNECTED."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await _status(path)
        if set(rows) == set(IDS) and all(r["status"] == "CONNECTED" for r in rows.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the core at {path} did not come up: {rows}")
        await asyncio.sleep(0.1)


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])


def _trader_pids(env: CoreEnv) -> dict[str, int | None]:
    return {a: lock_holder(env.data_dir / "state" / a / "trader.lock") for a in IDS}


def _traders_running(env: CoreEnv) -> list[int]:
    """Every live trader process of this data directory, whoever started it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"core.trader" in args and str(env.data_dir).encode() in args and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


@pytest.fixture
def env(core_env: CoreEnv) -> CoreEnv:
    core_env.write_config(ACCOUNTS)
    return core_env


async def test_the_plain_console_serves_the_control_socket_to_other_shells(env: CoreEnv) -> None:
    path = cfg_paths.control_socket_path(env.sock_dir)
    console = PtyConsole(env)
    client: RemoteConsoleClient | None = None
    try:
        await _all_connected(path)
        status = await asyncio.to_thread(_control, env, "--status")
        assert status.returncode == 0, status.stderr
        assert [line.split()[:3] for line in status.stdout.splitlines()[1:]] == [
            [a, "CONNECTED", "ACTIVE"] for a in IDS
        ]

        # a console attached to it sees the same accounts and trades
        accounts = await RemoteConsoleClient.discover(path)
        assert [a for a, _ in accounts] == list(IDS)
        client = RemoteConsoleClient(path, accounts)
        await client.connect()
        c1 = client.state("C1")
        await wait_until(lambda: c1.status is TraderStatus.CONNECTED and "m2705.DCE" in c1.ticks)
        tick = c1.ticks["m2705.DCE"]
        buy = OrderRequest(
            vt_symbol="m2705.DCE", direction=Direction.LONG, offset=Offset.OPEN, price=tick.limit_up, volume=1
        )
        reply = await client.send_order("C1", buy)
        assert reply.ok, reply.error
        await wait_until(
            lambda: any(t.reference == "manual" for t in c1.trades), what="the fill, seen attached"
        )

        # the kill switch from another shell
        killed = await asyncio.to_thread(_control, env, "--kill", "C1")
        assert killed.returncode == 0, killed.stderr
        assert killed.stdout.startswith("C1: done")
        await wait_until(lambda: c1.info is not None and c1.info.trading_state is TradingState.HALTED)
        assert (await _status(path))["C2"]["trading_state"] == "ACTIVE"

        pids = [p for p in _trader_pids(env).values() if p]
        assert len(pids) == 2
        # forked from the zygote the console launched first thing (core/zygote.py)
        zygotes = {_parent(p) for p in pids}
        assert len(zygotes) == 1 and _parent(zygote := zygotes.pop()) == console.proc.pid
        assert b"core.zygote" in _cmdline(zygote)
        assert await asyncio.to_thread(console.quit) == 0
        assert not path.exists()  # the socket went away with the console
        assert "no qtrader core" in (await asyncio.to_thread(_control, env, "--status")).stderr
        await wait_until(lambda: not any(pid_alive(p) for p in pids), what="its traders stopped")
    finally:
        if client is not None:
            await client.close()
        console.kill()


async def test_traders_left_by_a_dead_console_are_listed_killed_and_adopted(env: CoreEnv) -> None:
    path = cfg_paths.control_socket_path(env.sock_dir)
    first = PtyConsole(env)
    second: PtyConsole | None = None
    try:
        await _all_connected(path)
        tick_reply = await send_control(path, "info_req", Empty(), account_id="C1")
        assert tick_reply.ok
        rows = await _status(path)
        assert rows["C1"]["working_orders"] == 0
        # a position and a working order, to find again
        client = RemoteConsoleClient(path, [(a, "sim") for a in IDS])
        await client.connect()
        c1 = client.state("C1")
        await wait_until(lambda: "m2705.DCE" in c1.ticks)
        tick = c1.ticks["m2705.DCE"]
        for price in (tick.limit_up, tick.limit_down):
            req = OrderRequest(vt_symbol="m2705.DCE", direction=Direction.LONG, price=price, volume=1)
            assert (await client.send_order("C1", req)).ok
        await wait_until(lambda: len(c1.positions) == 1 and len(c1.working_orders) == 1)
        await client.close()
        pids = _trader_pids(env)
        assert all(pids.values())

        first.kill()  # the terminal went away: the traders trade on, alone
        assert all(pid_alive(p) for p in pids.values() if p)
        alone = [env.data_dir / "state" / a / "no_manager_since" for a in IDS]
        await wait_until(lambda: all(f.exists() for f in alone), what="the traders know they are alone")

        status = await asyncio.to_thread(_control, env, "--status")
        assert status.returncode == 1
        assert "no console or daemon holds" in status.stderr
        listed = {line.split()[0]: line.split() for line in status.stdout.splitlines()[2:4]}
        assert {a: int(listed[a][1]) for a in IDS} == pids
        assert [listed[a][2] for a in IDS] == ["ACTIVE", "ACTIVE"]
        assert all(listed[a][3] != "?" for a in IDS)  # since when, as they wrote it
        assert "it adopts them" in status.stdout

        killed = await asyncio.to_thread(_control, env, "--kill", "all")
        assert killed.returncode == 0, killed.stdout + killed.stderr
        assert "C1: done" in killed.stdout and "cancel sent 1" in killed.stdout
        assert "they stay running, HALTED" in killed.stdout
        assert _trader_pids(env) == pids and all(pid_alive(p) for p in pids.values() if p)
        after = await asyncio.to_thread(_control, env, "--status")
        assert [line.split()[2] for line in after.stdout.splitlines()[2:4]] == ["HALTED", "HALTED"]

        second = PtyConsole(env)
        await _all_connected(path)
        for account_id, pid in pids.items():
            info = await send_control(path, "info_req", Empty(), account_id=account_id)
            assert info.ok and info.result["pid"] == pid  # adopted, not replaced
        # and no second trader: the ones the new core started found the account taken and left
        theirs = sorted(p for p in pids.values() if p)
        await wait_until(lambda: _traders_running(env) == theirs, what="only the adopted traders run")
        rows = await _status(path)
        assert [rows[a]["trading_state"] for a in IDS] == ["HALTED", "HALTED"]
        assert rows["C1"]["positions"] == 1 and rows["C1"]["working_orders"] == 0
        assert await asyncio.to_thread(second.quit) == 0
        await wait_until(lambda: not any(pid_alive(p) for p in pids.values() if p), what="traders stopped")
    finally:
        first.kill()
        if second is not None:
            second.kill()
