"""Fuzzed frames to real processes (issue 14): a daemon's control socket, its manager's
per-account listener, and a trader (from a manager of our own). Every frame is seeded
(tests/wire_fuzz.py) and well framed: 0 crashes, every connection still answers after its
frames, only broken framing drops one, the other accounts stream on, and the target's
memory and open files do not grow. The figures are printed (``pytest -s``)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from config import load_config_file
from config import paths as cfg_paths
from core.client import RemoteConsoleClient
from core.control import send_control
from core.models import Direction, Offset, OrderRequest, Status, TraderInfo, TraderStatus
from core.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    MESSAGE_TYPES,
    REQUEST_TYPES,
    Empty,
    HistoryRequest,
    Link,
    Message,
    ProtocolError,
    Reply,
    ShutdownRequest,
    TraderCommand,
)
from tests.conftest import CoreEnv, sim_account, wait_until
from tests.test_daemon import Daemon
from tests.wire_fuzz import Fuzzer, Impostor, broken_framing

pytestmark = pytest.mark.timeout(240)

FRAMES = 12_000  # per target, after a warm-up
WARM_UP = 300
RSS_TOLERANCE_MB = 40  # the largest frames are 2 MB: the allocator may keep a few of them
LIVENESS_IDS = 1 << 40
STATUS_LINE = re.compile(r"^\d\d:\d\d:\d\d \S+ +\S")

# what may be fuzzed at each target with any data: nothing that stops a trader or the
# streams the test watches (trader_req stop, attach, shutdown) or halts them (kill_req)
CONTROL_TYPES = sorted(REQUEST_TYPES - {"trader_req", "attach", "shutdown", "kill_req", "state_req"})
TRADER_TYPES = sorted(
    REQUEST_TYPES - {"shutdown", "attach"} | {"quote", "quote_source", "tick", "reply", "order"}
)
LISTENER_TYPES = sorted(
    set(MESSAGE_TYPES) - REQUEST_TYPES - {"console_state", "trader_status", "quote", "quote_source"}
)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Conn:
    """One connection of ours: what it received, whether it was closed on us."""

    link: Link
    replies: dict[int, Reply] = field(default_factory=dict)
    requests: list[Message] = field(default_factory=list)
    ticks: int = 0
    closed: bool = False
    task: asyncio.Task[None] | None = None

    def start(self, answer: bool = False) -> Conn:
        self.task = asyncio.create_task(self._read(answer))
        return self

    async def _read(self, answer: bool) -> None:
        while True:
            try:
                msg = await self.link.recv()
            except ProtocolError as exc:
                if exc.fatal:
                    self.closed = True
                    return
                continue
            except (ConnectionError, OSError):
                self.closed = True
                return
            if msg.type == "reply" and msg.req_id is not None:
                self.replies[msg.req_id] = msg.data
            elif msg.type == "tick":
                self.ticks += 1
            elif msg.req_id is not None:
                self.requests.append(msg)
                if answer:  # a trader of ours: answer the manager as a trader would
                    result = _fake_info(msg.account_id or "DQ3") if msg.type == "status_req" else None
                    self.link.send_nowait("reply", Reply(ok=True, result=result), msg.req_id)

    async def send_raw(self, frames: list[bytes]) -> None:
        for n, frame in enumerate(frames):
            self.link.writer.write(frame)
            if n % 20 == 0:
                await self.link.writer.drain()
        await self.link.writer.drain()

    async def ask(self, msg_type: str, data: object, req_id: int, timeout: float = 30) -> Reply:
        req_id += LIVENESS_IDS  # apart from the fuzzer's ids: its replies never answer ours
        self.replies.pop(req_id, None)
        self.link.send_nowait(msg_type, data, req_id)  # type: ignore[arg-type]
        await wait_until(lambda: req_id in self.replies or self.closed, timeout, f"a reply to {msg_type}")
        assert not self.closed, "the connection was dropped for well-framed frames"
        return self.replies[req_id]

    async def hang_up(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.link.writer.transport.abort()


async def _never_reading(link: Link) -> int:
    """Requests (status and history, in turn) as fast as the core reads them, never a reply
    read, until the core hangs up; how many were written."""
    n = 0
    try:
        while True:
            n += 1
            req = Empty() if n % 2 else HistoryRequest(kind="orders", limit=10_000)
            link.send_nowait("status_req" if n % 2 else "history_req", req, n)
            await link.writer.drain()
    except (ConnectionError, OSError):
        link.writer.transport.abort()
        return n


def _fake_info(account_id: str) -> TraderInfo:
    return TraderInfo(account_id=account_id, gateway="sim", pid=os.getpid())


async def _connect(path: Path, account_id: str = "") -> Link:
    reader, writer = await asyncio.open_unix_connection(str(path))
    return Link(reader, writer, account_id=account_id)


# ---------------------------------------------------------------- the daemon's sockets

ACCOUNTS = (
    sim_account("DQ1", "m2705.DCE, rb2705.SHFE", seed=1)
    + sim_account("DQ2", "au2612.SHFE", seed=2)
    + sim_account("DQ3", "ag2612.SHFE", seed=3)
)


@pytest.fixture
async def daemon(core_env: CoreEnv) -> AsyncIterator[Daemon]:
    core_env.write_config(ACCOUNTS)
    d = Daemon(core_env)
    try:
        yield d
    finally:
        if d.proc.poll() is None:
            d.proc.terminate()
            try:
                d.proc.wait(20)
            except subprocess.TimeoutExpired:
                d.proc.kill()


async def test_fuzzed_frames_to_the_control_socket_and_the_per_account_listener(
    daemon: Daemon, core_env: CoreEnv
) -> None:
    d = daemon
    control = cfg_paths.control_socket_path(core_env.sock_dir)
    await wait_until(lambda: any("control socket" in line for line in d.lines), 60, "the daemon serving")
    watcher = RemoteConsoleClient(control, [("DQ1", "sim"), ("DQ2", "sim"), ("DQ3", "sim")])
    await watcher.connect()
    impostor: Impostor | None = None
    try:
        await wait_until(
            lambda: all(watcher.state(a).status is TraderStatus.CONNECTED for a in ("DQ1", "DQ2", "DQ3")),
            60,
            "three accounts connected",
        )
        # DQ3's socket gets a trader of ours: its trader is stopped first (the listener takes
        # the first process that registers while none is connected)
        stopped = await send_control(control, "trader_req", TraderCommand(action="stop"), "DQ3")
        assert stopped.ok, stopped.error
        await wait_until(lambda: watcher.state("DQ3").status is TraderStatus.STOPPED, what="DQ3 stopped")
        listener = cfg_paths.trader_socket_path(core_env.sock_dir, "DQ3")
        impostor = await Impostor.connect(
            listener, cfg_paths.account_state_dir(core_env.data_dir, "DQ3"), "DQ3"
        )
        identity = load_config_file(core_env.config_path).accounts[2].venue_identity()
        fake = Conn(impostor.link).start(answer=True)
        fake.link.send_nowait(
            "register", impostor.info("DQ3", core_env.data_dir, core_env.config_path, identity)
        )
        await wait_until(
            lambda: watcher.state("DQ3").info is not None and watcher.state("DQ3").pid,
            what="our trader registered",
        )

        pid = d.proc.pid
        ctl_fuzz = Fuzzer(seed=14, types=CONTROL_TYPES, account_id="DQ1")
        trader_fuzz = Fuzzer(seed=15, types=LISTENER_TYPES, account_id="DQ3")
        sent = {"control": 0, "listener": 0}
        asked = [0]

        async def round_of(n: int) -> None:
            conns = [Conn(await _connect(control, "DQ1")).start() for _ in range(4)]
            for conn in conns:
                await conn.send_raw(list(ctl_fuzz.frames(n // 4)))
                sent["control"] += n // 4
            for conn in conns:  # every connection still answers: nothing well framed dropped it
                reply = await conn.ask("status_req", Empty(), 1)
                assert reply.ok, reply.error
                await conn.hang_up()
            await fake.send_raw(list(trader_fuzz.frames(n)))
            sent["listener"] += n
            asked[0] += 1
            info = await send_control(control, "info_req", Empty(), "DQ3")  # routed to our trader
            assert info.ok, info.error
            assert not fake.closed, "the listener dropped our trader for well-framed frames"

        await round_of(WARM_UP)
        rss_before, fds_before = rss_mb(pid), open_fds(pid)
        ticks_before = {a: dict(watcher.state(a).ticks) for a in ("DQ1", "DQ2")}
        # meanwhile a client that asks and asks and never reads a reply: it must be cut off
        hog = await _connect(control, "DQ1")
        hogging = asyncio.create_task(_never_reading(hog))
        for _ in range(4):
            await round_of(FRAMES // 4)
        hogged = await asyncio.wait_for(hogging, 60)
        # the other accounts streamed on, and still do
        await wait_until(
            lambda: all(watcher.state(a).ticks != ticks_before[a] for a in ("DQ1", "DQ2")),
            what="DQ1 and DQ2 streaming on",
        )
        await wait_until(lambda: open_fds(pid) <= fds_before, 20, "the fuzzers' connections closed")
        rss_after, fds_after = rss_mb(pid), open_fds(pid)

        # broken framing, and only it, drops a connection: each on its own connection
        broken = broken_framing(DEFAULT_MAX_FRAME_BYTES)
        for what, frame in broken:
            conn = Conn(await _connect(control, "DQ1")).start()
            conn.link.writer.write(frame)
            if what.startswith("stream ends"):
                conn.link.writer.write_eof()
            await wait_until(lambda c=conn: c.closed, 20, f"the control socket closing on: {what}")
            await conn.hang_up()
        await fake.send_raw([broken[0][1]])
        await wait_until(lambda: fake.closed, 20, "the listener closing our trader's link on a bad length")
        fresh = Conn(await _connect(listener, "DQ3")).start()  # a first frame that is not framed
        fresh.link.writer.write(broken[1][1])
        await wait_until(lambda: fresh.closed, 20, "the listener closing a connection that sent a bad length")
        await fresh.hang_up()
        assert watcher.state("DQ1").status is TraderStatus.CONNECTED
    finally:
        await watcher.close()
        if impostor is not None:
            await impostor.stop()

    assert d.proc.poll() is None, "the daemon is alive"
    runtime_log = cfg_paths.runtime_log_path(core_env.data_dir).read_text()
    crashes = runtime_log.count("Traceback") + sum("Traceback" in line for line in d.lines)
    forged = [line for line in d.lines if not STATUS_LINE.match(line)]
    print(
        f"\nfuzz daemon: {sent['control']} frames to the control socket ({ctl_fuzz.counts}), "
        f"{sent['listener']} to the per-account listener ({trader_fuzz.counts}), "
        f"{len(broken) + 2} with broken framing; a client that never read cut off after "
        f"{hogged} requests; crashes {crashes}; forged output lines {len(forged)}; "
        f"RSS {rss_before:.1f} -> {rss_after:.1f} MB, fds {fds_before} -> {fds_after}"
    )
    assert crashes == 0, runtime_log[-3000:]
    assert not forged, forged[:5]
    assert rss_after <= rss_before + RSS_TOLERANCE_MB
    assert fds_after <= fds_before


async def test_twenty_consoles_on_a_daemon_while_trading_and_one_that_stops_reading(
    daemon: Daemon, core_env: CoreEnv
) -> None:
    """A real daemon: twenty attached consoles see every fill while orders stream from one of
    them; a console that attaches, asks and stops reading is cut off, and the daemon's memory
    and files are what they were."""
    d = daemon
    control = cfg_paths.control_socket_path(core_env.sock_dir)
    await wait_until(lambda: any("control socket" in line for line in d.lines), 60, "the daemon serving")
    accounts = [("DQ1", "sim"), ("DQ2", "sim"), ("DQ3", "sim")]
    consoles = [RemoteConsoleClient(control, accounts) for _ in range(20)]
    for console in consoles:
        await console.connect()
    try:
        await wait_until(
            lambda: all(k.state(a).ticks for k in consoles for a, _ in accounts),
            60,
            "twenty consoles streaming",
        )
        pid = d.proc.pid
        rss_before, fds_before = rss_mb(pid), open_fds(pid)
        stuck = await _connect(control, "DQ1")
        stuck.send_nowait("attach", Empty(), 1)
        stuck_task = asyncio.create_task(_never_reading(stuck))
        trader, orders = consoles[0], []
        for n in range(10):  # the account's order rate rule: 10 a second
            tick = trader.state("DQ3").ticks["ag2612.SHFE"]
            buy = n % 2 == 0
            reply = await trader.send_order(
                "DQ3",
                OrderRequest(
                    vt_symbol="ag2612.SHFE",
                    direction=Direction.LONG if buy else Direction.SHORT,
                    offset=Offset.OPEN if buy else Offset.CLOSE,
                    price=tick.limit_up if buy else tick.limit_down,
                    volume=1 + n // 2,  # unlike each other (the duplicate rule)
                ),
            )
            assert reply.ok, reply.error
            orders.append(reply.result["order_id"])
        asked = await asyncio.wait_for(stuck_task, 60)  # the daemon hung up on it
        await wait_until(
            lambda: all(
                all(
                    k.state("DQ3").orders.get(o) and k.state("DQ3").orders[o].status is Status.ALLTRADED
                    for o in orders
                )
                for k in consoles
            ),
            30,
            "every console seeing every fill",
        )
        seen = [dict(k.state("DQ1").ticks) for k in consoles]
        await wait_until(
            lambda: all(k.state("DQ1").ticks != s for k, s in zip(consoles, seen, strict=True)),
            what="every console still streaming",
        )
        assert all(k.attached for k in consoles)
        await wait_until(lambda: open_fds(pid) <= fds_before, 20, "the stuck console's connection gone")
        rss_after, fds_after = rss_mb(pid), open_fds(pid)
    finally:
        for console in consoles:
            await console.close()
    output = d.output()
    print(
        f"\ntwenty consoles: {len(orders)} orders filled and seen by all 20; the one that stopped reading "
        f"cut off after {asked} requests; RSS {rss_before:.1f} -> {rss_after:.1f} MB, fds {fds_before} -> {fds_after}"
    )
    assert "Traceback" not in output
    assert rss_after <= rss_before + RSS_TOLERANCE_MB
    assert fds_after <= fds_before


# ---------------------------------------------------------------- a trader


async def test_fuzzed_frames_to_a_trader(core_env: CoreEnv) -> None:
    core_env.write_config(sim_account("T1", "m2705.DCE, rb2705.SHFE", seed=7, rate=10))
    core_env.sock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = core_env.sock_dir / "fake-manager.sock"
    arrived: asyncio.Queue[Link] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await arrived.put(Link(reader, writer, account_id="manager"))

    server = await asyncio.start_unix_server(accept, str(path))
    out = open(core_env.root / "trader.out", "wb")  # noqa: SIM115, ASYNC230 - the child holds it
    proc = subprocess.Popen(  # noqa: ASYNC220 - waited on in a thread
        [
            sys.executable,
            "-m",
            "core.trader",
            "--account-id",
            "T1",
            "--config",
            str(core_env.config_path),
            "--data-dir",
            str(core_env.data_dir),
            "--socket-path",
            str(path),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        link = await asyncio.wait_for(arrived.get(), 60)
        first = await asyncio.wait_for(link.recv(), 30)
        assert first.type == "register"
        conn = Conn(link).start()
        await wait_until(lambda: conn.ticks > 0, 60, "the trader streaming quotes")
        fuzz = Fuzzer(seed=16, types=TRADER_TYPES, account_id="T1")
        sent = [0]
        asked = [0]

        async def round_of(n: int) -> None:
            await conn.send_raw(list(fuzz.frames(n)))
            sent[0] += n
            asked[0] += 1
            reply = await conn.ask("status_req", Empty(), asked[0])  # it still answers
            assert reply.ok, reply.error

        await round_of(WARM_UP)
        rss_before, fds_before = rss_mb(proc.pid), open_fds(proc.pid)
        for _ in range(4):
            await round_of(FRAMES // 4)
        ticks = conn.ticks
        await wait_until(lambda: conn.ticks > ticks, what="the trader streaming on")
        rss_after, fds_after = rss_mb(proc.pid), open_fds(proc.pid)

        # broken framing drops the link; the trader trades on and comes back by itself
        conn.link.writer.write(broken_framing(DEFAULT_MAX_FRAME_BYTES)[0][1])
        await wait_until(lambda: conn.closed, 20, "the trader dropping a link that broke framing")
        await conn.hang_up()
        again = await asyncio.wait_for(arrived.get(), 30)
        assert (await asyncio.wait_for(again.recv(), 30)).type == "register"
        back = Conn(again).start()
        assert (await back.ask("status_req", Empty(), 1)).ok
        back.link.send_nowait("shutdown", ShutdownRequest(), 2)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        out.close()
        server.close()
    trader_log = (core_env.data_dir / "logs" / "T1" / "trader.log").read_text()
    output = (core_env.root / "trader.out").read_text(errors="replace")
    crashes = trader_log.count("Traceback") + output.count("Traceback")
    print(
        f"\nfuzz trader: {sent[0]} frames ({fuzz.counts}), 1 with broken framing; crashes {crashes}; "
        f"RSS {rss_before:.1f} -> {rss_after:.1f} MB, fds {fds_before} -> {fds_after}; exit {code}"
    )
    assert code == 0, output[-2000:]
    assert crashes == 0, trader_log[-3000:]
    assert rss_after <= rss_before + RSS_TOLERANCE_MB
    assert fds_after <= fds_before
