"""Traders forked by the zygote (core/zygote.py) are what a fresh ``python -m core.trader``
would be: their own session, command line, environment, output file and exit code; and when
the zygote is gone, or cannot take a start, traders start the plain way."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from core import zygote as zygote_module
from core.manager import TradingManager, pid_alive
from core.models import Direction, Offset, OrderRequest, OrderType, Status, TraderStatus
from core.zygote import ROOM_VARIABLE, ZygoteProcess
from tests.conftest import CoreEnv, sim_account, wait_until

TWO = sim_account("Z1", "rb2705.SHFE", seed=1) + sim_account("Z2", "m2705.DCE", seed=2)


def _proc(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def _fds(pid: int) -> dict[int, str]:
    return {int(fd.name): os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()  # a zombie too


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def _parent(pid: int) -> int:
    return int(_proc(pid, "stat").rsplit(b")", 1)[1].split()[1])


def _up(mgr: TradingManager, aid: str, *, not_pid: int | None = None) -> bool:
    state = mgr.state(aid)
    return state.status is TraderStatus.CONNECTED and state.pid not in (None, not_pid) and bool(state.ticks)


async def _started(core_env: CoreEnv, **kwargs: object) -> TradingManager:
    config = core_env.write_config(TWO)
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir, **kwargs)  # type: ignore[arg-type]
    await mgr.start()
    await wait_until(lambda: all(_up(mgr, a) for a in ("Z1", "Z2")), 30, "both traders up")
    return mgr


async def test_a_forked_trader_is_what_a_fresh_one_would_be(core_env: CoreEnv) -> None:
    mgr = await _started(core_env)
    try:
        zygote = mgr.zygote
        assert zygote is not None and zygote.dead is None
        for aid in ("Z1", "Z2"):
            pid = mgr.state(aid).pid
            assert pid is not None
            assert _parent(pid) == zygote.pid  # forked, not a fresh interpreter
            assert os.getsid(pid) == pid  # its own session: the terminal's Ctrl+C is not for it
            args = _proc(pid, "cmdline").rstrip(b"\0").split(b"\0")
            assert args[:3] == [os.fsencode(sys.executable), b"-m", b"core.trader"]
            assert args[args.index(b"--account-id") + 1] == aid.encode()
            assert args[args.index(b"--data-dir") + 1] == os.fsencode(core_env.data_dir)
            environ = dict(e.split(b"=", 1) for e in _proc(pid, "environ").split(b"\0") if b"=" in e)
            assert ROOM_VARIABLE.encode() not in environ
            assert environ.get(b"PATH") == os.environ["PATH"].encode()
            fds = _fds(pid)
            assert fds[0] == os.devnull
            output = str(core_env.data_dir / "logs" / aid / "stderr.log")
            assert fds[1] == fds[2] == output
        # the zygote itself: one thread, no trader's descriptors, no event loop's
        assert _threads(zygote.pid) == 1
        assert b"core.zygote" in _proc(zygote.pid, "cmdline")

        # SIGKILL comes through as such: a crash, restarted at once, forked again
        old = mgr.state("Z1").pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        await wait_until(lambda: _up(mgr, "Z1", not_pid=old), 30, "Z1 restarted")
        assert mgr.state("Z1").restarts == 1
        assert not pid_alive(old)
        new = mgr.state("Z1").pid
        assert new is not None and _parent(new) == zygote.pid
    finally:
        await mgr.stop()
    assert mgr.zygote is not None and not pid_alive(mgr.zygote.pid)  # stopped with the manager
    assert all(mgr.state(a).status is TraderStatus.STOPPED for a in ("Z1", "Z2"))


async def test_a_dead_zygote_means_plain_starts_and_its_traders_are_still_watched(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = await _started(core_env)
    try:
        zygote = mgr.zygote
        assert zygote is not None
        forked = {aid: mgr.state(aid).pid for aid in ("Z1", "Z2")}
        os.kill(zygote.pid, signal.SIGKILL)
        await wait_until(lambda: zygote.dead is not None, 10, "the zygote given up")
        assert all(_up(mgr, a) for a in forked)  # its traders trade on

        # one it forked, killed now: its exit is still seen, and it comes back the plain way
        old = forked["Z1"]
        assert old is not None
        os.kill(old, signal.SIGKILL)
        await wait_until(lambda: _up(mgr, "Z1", not_pid=old), 30, "Z1 restarted the plain way")
        new = mgr.state("Z1").pid
        assert new is not None and _parent(new) == os.getpid()
        assert b"core.trader" in _proc(new, "cmdline")
        assert mgr.state("Z1").restarts == 1

        # a while later a new zygote is launched, at the next start, and forks it
        monkeypatch.setattr(zygote_module, "RELAUNCH_AFTER", 0.0)
        old = forked["Z2"]
        assert old is not None
        os.kill(old, signal.SIGKILL)
        await wait_until(lambda: _up(mgr, "Z2", not_pid=old), 30, "Z2 restarted from a new zygote")
        fresh = mgr.zygote
        assert fresh is not None and fresh is not zygote and fresh.dead is None
        assert _parent(mgr.state("Z2").pid or 0) == fresh.pid
        await wait_until(lambda: not _exists(zygote.pid), 10, "the dead zygote reaped, not left a zombie")
    finally:
        await mgr.stop()
    assert all(mgr.state(a).status is TraderStatus.STOPPED for a in ("Z1", "Z2"))


async def test_a_start_the_zygote_has_no_room_for_is_a_plain_one(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = await _started(core_env)
    try:
        zygote = mgr.zygote
        assert zygote is not None
        # an environment grown past the room the zygote was launched with
        monkeypatch.setenv("QT_TEST_BIG", "x" * 50_000)
        old = mgr.state("Z2").pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        await wait_until(lambda: _up(mgr, "Z2", not_pid=old), 30, "Z2 restarted")
        new = mgr.state("Z2").pid
        assert new is not None and _parent(new) == os.getpid()
        environ = _proc(new, "environ")
        assert b"QT_TEST_BIG=" + b"x" * 50_000 in environ
        assert zygote.dead is None  # refused that one start, still used for the next
    finally:
        await mgr.stop()


async def test_no_zygote_when_told(core_env: CoreEnv) -> None:
    mgr = await _started(core_env, zygote=False)
    try:
        assert mgr.zygote is None
        assert all(_parent(mgr.state(a).pid or 0) == os.getpid() for a in ("Z1", "Z2"))
    finally:
        await mgr.stop()


async def _refused_order(mgr: TradingManager, aid: str) -> str:
    """An order refused before the venue (above the limit-up price): its ``LOCAL.`` id."""
    tick = mgr.state(aid).ticks["rb2705.SHFE"]
    req = OrderRequest(
        vt_symbol="rb2705.SHFE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=OrderType.LIMIT,
        price=tick.limit_up * 2,
        volume=1,
    )
    reply = await mgr.send_order(aid, req)
    assert not reply.ok
    order_id = reply.result["order_id"]
    assert order_id.startswith("LOCAL.")
    return order_id


async def test_each_forked_trader_numbers_its_refusals_in_its_own_run(core_env: CoreEnv) -> None:
    # LOCAL.<stamp>.<run>-<n>: the run told a new process apart; forks of one zygote must not
    # share the zygote's (a restart within the same second would reuse an id, and overwrite
    # the refusal on record: ARCHITECTURE.md, Invariants 5)
    mgr = await _started(core_env)
    try:
        first = await _refused_order(mgr, "Z1")
        old = mgr.state("Z1").pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        await wait_until(lambda: _up(mgr, "Z1", not_pid=old), 30, "Z1 restarted")
        new = mgr.state("Z1").pid
        assert mgr.zygote is not None and new is not None and _parent(new) == mgr.zygote.pid
        second = await _refused_order(mgr, "Z1")
        assert first.rsplit("-", 1)[0].split(".")[-1] != second.rsplit("-", 1)[0].split(".")[-1]
        state = mgr.state("Z1")
        await wait_until(lambda: first in state.orders and second in state.orders, 10, "both refusals kept")
        assert state.orders[first].status is state.orders[second].status is Status.REJECTED
    finally:
        await mgr.stop()


async def test_the_last_resort_stop_signals_forked_traders_by_pidfd_never_by_a_stale_pid(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # terminate_children (the console dying without its loop) must not signal by pid a forked
    # trader that exited before it was held: its exit report is unread, the pid may be
    # another process's by now
    mgr = await _started(core_env)
    try:
        assert mgr.zygote is not None
        gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await gone.wait()  # exited and reaped: its pid is free for anyone
        exited = ZygoteProcess(gone.pid)
        assert exited.returncode is None  # its exit report never came
        real = mgr.proxies["Z2"].proc
        assert isinstance(real, ZygoteProcess)
        z1 = mgr.proxies["Z1"].proc
        mgr.proxies["Z1"].proc = exited
        signalled: list[int] = []
        kill = os.kill

        def spy(pid: int, sig: int) -> None:
            signalled.append(pid)
            kill(pid, sig)

        monkeypatch.setattr(os, "kill", spy)
        monkeypatch.setattr(mgr.zygote, "close", lambda: None)  # its reports still come, here
        sent = mgr.terminate_children()
        monkeypatch.setattr(os, "kill", kill)
        mgr.proxies["Z1"].proc = z1
        assert gone.pid not in signalled and gone.pid not in sent
        assert sent == [real.pid]
        await wait_until(lambda: real.returncode is not None, 20, "Z2's trader stopped on SIGTERM")
    finally:
        await mgr.stop()


AT_EXIT = """
import atexit
from pathlib import Path

from strategies.base import Strategy

atexit.register(lambda: Path({probe!r}).write_text("ran"))


class AtExit(Strategy):
    \"\"\"Does nothing; its module leaves a file when the process exits as Python does.\"\"\"

    def bars_needed(self) -> int:
        return 0
"""


async def test_a_forked_trader_exits_as_python_would_its_atexit_handlers_run(core_env: CoreEnv) -> None:
    # a strategy's module (or a gateway's library: TA-Lib's) may leave its work to atexit, and
    # an interpreter waits for its threads: a fork must not leave with os._exit where
    # ``python -m core.trader`` would have run them
    probe = core_env.root / "at_exit.txt"
    strategies = core_env.root / "user_strategies"
    strategies.mkdir()
    (strategies / "at_exit.py").write_text(AT_EXIT.format(probe=str(probe)))
    accounts = sim_account("Z1", "rb2705.SHFE") + (
        "    strategies:\n      - {name: probe, class: AtExit, symbol: rb2705.SHFE, autostart: true}\n"
    )
    config = core_env.write_config(accounts, extra=f"strategy_path: {strategies}")
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        await wait_until(lambda: _up(mgr, "Z1"), 30, "Z1 up")
        assert mgr.zygote is not None and _parent(mgr.state("Z1").pid or 0) == mgr.zygote.pid
        assert not probe.exists()
    finally:
        await mgr.stop()
    assert mgr.state("Z1").status is TraderStatus.STOPPED
    assert probe.read_text() == "ran"
