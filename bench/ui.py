"""Console: tick -> screen latency under load, and start -> first quote on screen.

Latency: 8 sim accounts x 100 contracts x 2 ticks/s, every trader its own
process, the console (``QTraderApp`` over ``LocalConsoleClient``, headless at
160x45) in this process with the manager, as ``qtrader-tui`` runs them. For
every tick of the account on screen we take the time from its creation in the
trader (``Tick.datetime``, stamped by the sim when it moves the market) to

- the flush that updated its Market row (the app's ``on_frame`` hook), and
- the compositor render that follows (what a terminal is sent; headless
  Textual skips only the write itself), for the ticks whose row is scrolled
  into view: a change to a row out of view has nothing to draw (the table
  repaints changed lines only), it is counted apart;

with the tick's way through the core split off: trader -> manager (frame
``ts`` to decoded in the manager) and manager -> flush. A tick replaced by a
newer one of its contract before a flush is never drawn and not counted; all
100 rows count for the flush, whether scrolled into view or not. The instruments wrap
methods of this run's objects (the aggregator's ``apply``, the Market table's
``_set_row`` and ``update_rows``, the screen's ``_compositor_refresh``); no console or core code
changes for them.

Start: the demo configuration, twice over. In process: from building the
manager and the app to the first flush with a row in Market (headless). End to
end: ``qtrader-tui`` run as a command in a pseudo-terminal, from the spawn to
the first bytes of a quote row written to the terminal (Python start-up and
imports included).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

from bench import minimal_app
from bench.harness import make_env, sim_account, wait_until
from bench.report import print_json, print_table, summary_us
from config import demo_config_path, load_config_file
from core.client import LocalConsoleClient
from core.manager import TradingManager
from core.models import Tick, TraderStatus
from core.protocol import Message
from gateways.sim_contracts import PRODUCTS as SIM_PRODUCTS
from tui.app import QTraderApp
from tui.screens.account import AccountScreen
from tui.widgets.market import MarketTable

ACCOUNTS = 8
CONTRACTS = 100
RATE = 2.0  # ticks per second per contract
SIZE = (160, 45)
PRODUCTS = [
    ("au", "SHFE"),
    ("ag", "SHFE"),
    ("rb", "SHFE"),
    ("cu", "SHFE"),
    ("al", "SHFE"),
    ("sc", "INE"),
    ("i", "DCE"),
    ("m", "DCE"),
    ("p", "DCE"),
    ("TA", "CZCE"),
    ("MA", "CZCE"),
    ("SR", "CZCE"),
    ("IF", "CFFEX"),
    ("IC", "CFFEX"),
    ("IM", "CFFEX"),
]
MONTHS = ["2612", *(f"{y}{m:02d}" for y in (27, 28, 29, 30) for m in range(1, 13))]  # 2612 .. 3012
_OTHER_PRODUCTS = [
    (code, spec.exchange.name)
    for code, spec in SIM_PRODUCTS.items()
    if (code, spec.exchange.name) not in PRODUCTS
]
MINIMAL_APP = Path(minimal_app.__file__)
MINIMAL_FIRST_FRAME = minimal_app.FIRST_FRAME


def watchlist(count: int = CONTRACTS) -> list[str]:
    """``count`` sim contracts, month by month across the products above (CZCE writes YMM);
    past 12 months of them (180), every other product the sim lists too (the whole market)."""
    products = [*PRODUCTS] if count <= len(PRODUCTS) * 12 else [*PRODUCTS, *_OTHER_PRODUCTS]
    symbols = []
    for month in MONTHS:
        for product, exchange in products:
            code = month[1:] if exchange == "CZCE" else month
            symbols.append(f"{product}{code}.{exchange}")
    if count > len(symbols):
        raise ValueError(f"at most {len(symbols)} sim contracts")
    return symbols[:count]


# =========================================================================== latency


class LatencyProbe:
    """Times each tick of one account from its creation to its flush and its render."""

    def __init__(self, mgr: TradingManager, app: QTraderApp, account_id: str) -> None:
        self.account_id = account_id
        self.state = mgr.state(account_id)
        self.recording = False
        self.to_flush: list[float] = []  # tick created -> Market cell updated
        self.to_render: list[float] = []  # tick created -> compositor render after that flush (in view)
        self.out_of_view = 0  # ticks flushed to a row scrolled out of view: nothing to draw
        self.transport: list[float] = []  # trader frame sent -> decoded in the manager
        self.queued: list[float] = []  # decoded in the manager -> flushed
        self.ticks_in = 0  # ticks of every account decoded while recording
        self.frames = 0
        self.renders = 0  # compositor renders of the screen
        self._received: dict[str, float] = {}  # vt_symbol -> when its last tick was decoded
        self._touched: set[str] = set()
        self._unrendered: list[float] = []  # creation times of ticks flushed, not yet rendered
        self._market: MarketTable | None = None
        self._wrap_aggregator(mgr)
        app.on_frame = self._on_frame

    def _wrap_aggregator(self, mgr: TradingManager) -> None:
        apply = mgr.aggregator.apply
        mine = self.account_id

        def timed_apply(account_id: str, msg: Message) -> bool:
            if msg.type == "tick" and self.recording:
                self.ticks_in += 1
                if account_id == mine:
                    now = time.time()
                    self._received[msg.data.vt_symbol] = now
                    self.transport.append(now - msg.ts)
            return apply(account_id, msg)

        mgr.aggregator.apply = timed_apply  # type: ignore[method-assign]

    def attach(self, screen: AccountScreen) -> None:
        """Instrument the Market table and the screen's renders."""
        market = self._market = screen.query_one("#market", MarketTable)
        touched = self._touched

        def wrap(method: Callable[..., Any], key_of: Callable[..., str]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                touched.add(key_of(*args, **kwargs))
                return method(*args, **kwargs)

            return wrapper

        market._set_row = wrap(market._set_row, lambda key, *a, **k: key)  # type: ignore[method-assign]
        update_rows = market.update_rows

        def timed_update_rows(items: Iterable[Tick]) -> None:
            items = list(items)
            touched.update(item.vt_symbol for item in items)  # in view or not (then kept for later)
            update_rows(items)

        market.update_rows = timed_update_rows  # type: ignore[method-assign]
        refresh = screen._compositor_refresh

        def timed_refresh() -> None:
            refresh()
            self.renders += 1
            if self._unrendered:
                now = time.time()
                self.to_render.extend(now - created for created in self._unrendered)
                self._unrendered.clear()

        screen._compositor_refresh = timed_refresh  # type: ignore[method-assign]

    def _on_frame(self) -> None:
        if not self._touched:
            return
        now = time.time()
        if self.recording:
            self.frames += 1
            ticks = self.state.ticks
            market = self._market
            for key in self._touched:
                created = ticks[key].datetime.timestamp()
                self.to_flush.append(now - created)
                if market is None or market.row_in_view(key):
                    self._unrendered.append(created)
                else:
                    self.out_of_view += 1
                received = self._received.get(key)
                if received is not None:
                    self.queued.append(now - received)
        self._touched.clear()


async def _latency(seconds: float, accounts: int, contracts: int) -> dict[str, Any]:
    env = make_env()
    symbols = watchlist(contracts)
    config = env.write(
        "".join(sim_account(f"U{n}", symbols, rate=RATE, seed=n) for n in range(1, accounts + 1))
    )
    mgr = TradingManager(config, config_path=env.config_path, data_dir=env.data_dir)
    app = QTraderApp(LocalConsoleClient(mgr), start_core=mgr.start, stop_core=mgr.stop)
    probe = LatencyProbe(mgr, app, "U1")
    try:
        async with app.run_test(headless=True, size=SIZE):
            screen = app.screen
            assert isinstance(screen, AccountScreen)
            probe.attach(screen)
            market = screen.query_one("#market", MarketTable)
            ids = mgr.account_ids
            await wait_until(
                lambda: (
                    all(
                        mgr.state(a).status is TraderStatus.CONNECTED and len(mgr.state(a).ticks) == contracts
                        for a in ids
                    )
                    and market.row_count == contracts
                ),
                timeout=120,
            )
            await asyncio.sleep(3.0)  # warm-up: start-up work settles
            traders = [psutil.Process(mgr.state(a).pid or 0) for a in ids]
            traders0 = sum(_cpu_seconds(p) for p in traders)
            psutil.cpu_percent()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            probe.recording = True
            await asyncio.sleep(seconds)
            probe.recording = False
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            machine = psutil.cpu_percent()
            traders_cpu = sum(_cpu_seconds(p) for p in traders) - traders0
            scroll = await _scroll(market, probe)
            await _stop_core(mgr)
    finally:
        await mgr.stop()
        env.cleanup()
    return {
        "probe": probe,
        "wall": wall,
        "cpu": cpu,
        "traders_cpu": traders_cpu,
        "machine": machine,
        "scroll": scroll,
    }


async def _scroll(market: MarketTable, probe: LatencyProbe) -> list[float]:
    """The watchlist scrolled while the market ticks: page down through it, then to the end
    and back to the top; seconds from each key's action to the screen's next render (a key
    that moves nothing, a page down on the last row, has no render to wait for: not timed)."""
    market.focus()
    actions = [market.action_page_down] * 20 + [market.action_last_row, market.action_first_row]
    times = []
    for action in actions:
        before, row = probe.renders, market.cursor_row
        t0 = time.perf_counter()
        action()
        if market.cursor_row == row:  # already on the last row: nothing to draw, nothing timed
            continue
        await wait_until(lambda before=before: probe.renders > before, timeout=30)
        times.append(time.perf_counter() - t0)
    return times


async def _stop_core(mgr: TradingManager) -> None:
    """Stop the traders while the console still runs, and let it draw their last changes
    (a redraw still pending when the app shuts down would find its panels gone)."""
    await mgr.stop()
    await asyncio.sleep(0.2)


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


# =========================================================================== start-up


async def _first_quote_in_process(root: Path) -> float:
    """Build the demo's manager and console, run it headless: seconds to a Market row on screen."""
    (root / "s").mkdir(mode=0o700)
    t0 = time.perf_counter()
    config = load_config_file(demo_config_path())
    mgr = TradingManager(config, config_path=demo_config_path(), data_dir=root / "data", sock_dir=root / "s")
    app = QTraderApp(
        LocalConsoleClient(mgr), scheme=config.ui.color_scheme, start_core=mgr.start, stop_core=mgr.stop
    )
    first: list[float] = []

    def on_frame() -> None:
        screen = app.screen
        if (
            not first
            and isinstance(screen, AccountScreen)
            and screen.query_one("#market", MarketTable).row_count
        ):
            first.append(time.perf_counter() - t0)

    app.on_frame = on_frame
    try:
        async with app.run_test(headless=True, size=SIZE):
            await wait_until(lambda: first, timeout=60)
            await _stop_core(mgr)
    finally:
        await mgr.stop()
    return first[0]


def _first_quote_command(root: Path, timeout: float = 60.0) -> float:
    """``qtrader-tui`` (the demo) in a 160x45 pseudo-terminal: seconds from the spawn to
    the first quote row written to the terminal (the first contract of the demo's first
    account: its row is drawn once the account has a quote)."""
    first_quote = load_config_file(demo_config_path()).accounts[0].watchlist[0].encode()
    script = Path(sys.executable).with_name("qtrader-tui")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "tui.cli"]
    return _spawn_to_first(root, [*launcher, "--data-dir", str(root / "data")], first_quote, timeout)


def _minimal_app_command(root: Path, timeout: float = 60.0) -> float:
    """The floor: a one-Static Textual app spawned the same way, to its first frame."""
    return _spawn_to_first(root, [sys.executable, str(MINIMAL_APP)], MINIMAL_FIRST_FRAME, timeout)


def _spawn_to_first(root: Path, command: list[str], marker: bytes, timeout: float) -> float:
    """Run ``command`` in a 160x45 pseudo-terminal: seconds from the spawn to ``marker``
    written to the terminal; then ``q`` and wait for it to quit."""
    cwd = root / "cwd"  # no ./config/config.yaml there: the demo runs
    cwd.mkdir()
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "COLUMNS": str(SIZE[0]),
        "LINES": str(SIZE[1]),
        "XDG_RUNTIME_DIR": str(root),  # the demo's sockets, away from any real console
    }
    env.pop("QTRADER_CONFIG", None)
    env.pop("TEXTUAL", None)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    elapsed: float | None = None
    try:
        while time.perf_counter() - t0 < timeout:
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            seen = (seen + chunk)[-4096:]
            if marker in seen:
                elapsed = time.perf_counter() - t0
                break
        if elapsed is None:
            raise RuntimeError(
                f"{command[0]} showed no {marker.decode()} within {timeout:g} s: {seen[-600:]!r}"
            )
        os.write(master, b"q")  # quit: the console asks first, then stops its traders
        deadline = time.monotonic() + 20
        answered = time.monotonic()
        while proc.poll() is None and time.monotonic() < deadline:
            if time.monotonic() - answered > 0.4:  # "y", a fresh press (ConfirmDialog.REPEAT_GAP)
                answered = time.monotonic()
                os.write(master, b"y")
            # keep the terminal drained so the console never blocks writing to it
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
        return elapsed
    finally:
        # a console that did not quit leaves its traders running (as after a crash): stop them
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        psutil.wait_procs(children, timeout=10)
        os.close(master)


def _start_runs(runs: int) -> dict[str, list[float]]:
    in_process: list[float] = []
    command: list[float] = []
    minimal: list[float] = []
    for _ in range(runs):
        root = Path(tempfile.mkdtemp(prefix="qtu-"))
        try:
            minimal.append(_minimal_app_command(root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        root = Path(tempfile.mkdtemp(prefix="qtu-"))  # a fresh data directory: a first start
        try:
            in_process.append(asyncio.run(_first_quote_in_process(root)))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        root = Path(tempfile.mkdtemp(prefix="qtu-"))
        try:
            command.append(_first_quote_command(root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return {"in_process": in_process, "command": command, "minimal": minimal}


# =========================================================================== report


def _ms(us: float) -> float:
    return round(us / 1000, 2)


def run(
    *, quick: bool = False, accounts: int = ACCOUNTS, contracts: int = CONTRACTS, start_only: bool = False
) -> dict[str, Any]:
    runs = 2 if quick else 5
    if start_only:
        figures = _report_starts(runs)
        print_json("ui", figures)
        return figures
    seconds = 5.0 if quick else 25.0
    measured = asyncio.run(_latency(seconds, accounts, contracts))
    probe: LatencyProbe = measured["probe"]
    if not probe.to_flush:
        raise RuntimeError("no tick reached the screen while measuring")
    flush = summary_us(probe.to_flush)
    render = summary_us(probe.to_render)
    transport = summary_us(probe.transport)
    queued = summary_us(probe.queued)
    wall = measured["wall"]
    print_table(
        f"ui: tick -> screen, {accounts} accounts x {contracts} contracts x {RATE:g} ticks/s, "
        f"process mode, console headless {SIZE[0]}x{SIZE[1]}, {wall:.0f} s, account U1 on screen",
        ["measure", "samples", "p50 ms", "p99 ms", "mean ms", "max ms", "target p99"],
        [
            ("tick created -> Market cell updated", len(probe.to_flush), *map(_ms, flush.values()), "-"),
            (
                "tick created -> screen rendered (row in view)",
                len(probe.to_render),
                *map(_ms, render.values()),
                "<= 25 ms",
            ),
            ("  of which trader -> manager", len(probe.transport), *map(_ms, transport.values()), "-"),
            ("  of which manager -> flush", len(probe.queued), *map(_ms, queued.values()), "-"),
        ],
    )
    load = {
        "ticks_per_s_all_accounts": round(probe.ticks_in / wall),
        "frames_per_s": round(probe.frames / wall, 1),
        "console_cpu_pct": round(100 * measured["cpu"] / wall, 1),
        "traders_cpu_pct": round(100 * measured["traders_cpu"] / wall, 1),
        "machine_busy_pct": round(measured["machine"], 1),
        "cores": psutil.cpu_count() or 0,
    }
    scroll = summary_us(measured["scroll"])
    print_table(
        f"ui: the watchlist of {contracts} scrolled while it ticks (page down x20, end, home)",
        ["measure", "samples", "p50 ms", "p99 ms", "mean ms", "max ms", "target"],
        [("key -> next screen render", len(measured["scroll"]), *map(_ms, scroll.values()), "no stall")],
    )
    print_table(
        "ui: load while measuring",
        ["measure", "value"],
        [
            ("ticks decoded per second (all accounts)", load["ticks_per_s_all_accounts"]),
            ("frames with Market updates per second", load["frames_per_s"]),
            ("ticks to Market rows out of view (nothing to draw)", probe.out_of_view),
            ("console process CPU % (one core = 100)", load["console_cpu_pct"]),
            (f"{accounts} trader processes CPU % (sum)", load["traders_cpu_pct"]),
            (f"machine busy % ({load['cores']} cores = 100)", load["machine_busy_pct"]),
        ],
    )

    figures = {
        "accounts": accounts,
        "contracts": contracts,
        "seconds": round(wall, 1),
        "samples": len(probe.to_flush),
        **{f"flush_{k}": v for k, v in flush.items()},
        **{f"render_{k}": v for k, v in render.items()},
        "transport_p99_us": transport["p99_us"],
        "scroll_max_us": scroll["max_us"],
        "scroll_p50_us": scroll["p50_us"],
        "queued_p99_us": queued["p99_us"],
        **load,
        **_report_starts(runs),
        "target_render_p99_us": 25000,
    }
    print_json("ui", figures)
    return figures


def _report_starts(runs: int) -> dict[str, Any]:
    """The start table (``runs`` fresh starts of each kind, taking turns) and its figures."""
    starts = _start_runs(runs)
    inp, cmd = sorted(starts["in_process"]), sorted(starts["command"])
    floor = sorted(starts["minimal"])
    start_ratio = cmd[len(cmd) // 2] / floor[len(floor) // 2]
    print_table(
        f"ui: start -> first quote on screen (demo, 3 accounts, process mode, {runs} fresh starts)",
        ["measure", "median s", "worst s", "target"],
        [
            ("QTraderApp + manager built -> Market row flushed", inp[len(inp) // 2], inp[-1], "-"),
            ("qtrader-tui spawned -> quote row on the terminal", cmd[len(cmd) // 2], cmd[-1], "<= 1.5 s"),
            ("floor: minimal Textual app spawned -> first frame", floor[len(floor) // 2], floor[-1], "-"),
            ("start_ratio (qtrader-tui median / floor median)", round(start_ratio, 2), "-", "<= 3"),
        ],
    )
    return {
        "start_in_process_median_s": round(inp[len(inp) // 2], 3),
        "start_command_median_s": round(cmd[len(cmd) // 2], 3),
        "start_command_worst_s": round(cmd[-1], 3),
        "start_floor_median_s": round(floor[len(floor) // 2], 3),
        "start_ratio": round(start_ratio, 2),
        "target_start_ratio": 3.0,
        "target_start_s": 1.5,
    }
