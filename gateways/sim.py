"""SimGateway: the built-in simulated exchange behind the ``Gateway`` interface.

The exchange itself (markets, matching, the broker's books) is the pure engine in
``gateways/sim_exchange.py``. This adapter adds what needs a process around it:

- one asyncio task that moves the markets (never one timer per contract): at ``tick_rate``
  steps per second per contract it wakes every ``max(50 ms, 1 / (contracts x rate))`` and steps
  the contracts that are due, round robin, so 100 contracts arrive as a steady trickle rather
  than a burst; with ``tick_rate`` 0 there is no task at all and an idle gateway uses no CPU;
- pushing events to the listener: ``send_order`` decides synchronously and reports the order
  updates, trades, positions and account *before* it returns; the account is also pushed about
  once a second while the market ticks (mark-to-market), never on every tick;
- persistence: the exchange is the broker, so its state survives a restart of the trader
  process, as a snapshot ``state_dir / "sim_exchange.json"`` and its journal (the files are
  described in ``gateways/sim_journal.py``). Every change made by an order, fill, cancel or the
  day roll is made durable *before* the listener hears of it (so a trader killed right after a
  fill finds it again), cheaply: as one appended journal line, not a rewrite of the snapshot.
  The journal is folded into a new snapshot (compaction) on connect, at the day roll, on
  close, and every ``JOURNAL_COMPACT_LINES`` changes, at the first quiet moment after them.
  Market ticks alone never touch the disk: last prices are written with the snapshots and with
  the changes of the contracts concerned. A snapshot that cannot be read is renamed aside
  (with its journal) with an ERROR log and the exchange starts afresh; a torn journal line is
  skipped with a WARNING.

Settings: the validated ``sim:`` section of an account's config (``SimSettingsView``):
``initial_balance``, ``seed``, ``tick_rate`` (0 = no timer, step by hand); ``replay`` (a file
of bars or ticks, ``gateways/sim_replay.py``), ``replay_symbol`` and ``speed``: one task plays the
file's quotes into that contract's market (the random walk leaves it alone) at ``speed``
simulated seconds per second, the ticks carrying the file's times (orders and trades the
exchange's clock); at the end it logs a WARNING and the market stays at the last quote. Where it
got to is kept in ``state_dir / "sim_replay_position.json"`` (every minute of the file's time, at
the end, at close): a restarted trader shows the last quote played again and goes on after it
(the same file only: one changed since is played from its start). Keyword arguments:
``state_file`` (optional; relative paths are under ``state_dir``) and ``external_quotes`` (True
for a paper account: no synthetic market, ``feed_quote`` moves the book with another account's
real quotes and resting orders match against them; ``set_quote_source`` says when that account
is down: the paper account is then DISCONNECTED with the source's reason).

Cancelling an unknown or finished order is answered with a WARNING log; for a known order its
unchanged snapshot is pushed again, so the trader sees the order's real state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar, Protocol

from core.models import (
    CHINA_TZ,
    CancelRequest,
    Contract,
    GatewayStatus,
    OrderRequest,
    Tick,
    Trade,
    local_order_id,
    now,
)
from gateways import sim_contracts
from gateways.base import Gateway, GatewayListener
from gateways.sim_exchange import SimError, SimExchange, Update
from gateways.sim_journal import StateJournal, load_state, move_aside

log = logging.getLogger(__name__)

STATE_FILE_NAME = "sim_exchange.json"
SLICE_SECONDS = 0.05  # the market task wakes at most this often
ACCOUNT_PUSH_SECONDS = 1.0  # mark-to-market account push while ticking
PAPER_QUOTE_MAX_AGE = 60.0  # seconds: a paper order needs a real quote at most this old
JOURNAL_COMPACT_LINES = 1000  # fold the journal into a new snapshot after this many changes,
#: once no change has come for this long (at twice as many, right after the change): a
#: compaction (0.6 ms, up to 18 ms measured on the 2-core VM: a file written, renamed, a
#: journal unlinked and made anew) falls between two bursts of orders, not on the next one
COMPACT_QUIET_SECONDS = 0.005
REPLAY_MAX_WAIT = 2.0  # seconds: the longest a replay waits between two quotes (a night is cut)
REPLAY_MAX_BATCH = 50  # quotes a replay at speed "max" plays before giving the loop a turn
REPLAY_POSITION_FILE = "sim_replay_position.json"  # where the replay got to (state_dir)
REPLAY_SAVE_SECONDS = 60.0  # of the file's time: how often that is written while it plays


def _shifted_clock(start: datetime) -> Callable[[], datetime]:
    """A clock that reads ``start`` now and runs on at the wall clock's pace."""
    offset = start - now()
    return lambda: now() + offset


class SimSettingsView(Protocol):
    """What the sim reads of its validated ``sim:`` settings (config.schema.SimSettings)."""

    initial_balance: float
    seed: int
    #: ticks per second per contract; 0 freezes the synthetic market
    tick_rate: float
    #: a file of bars or ticks that drives one contract's market instead (gateways/sim_replay.py)
    replay: str | None
    #: the contract it drives ("" / None: the file's symbol and exchange columns)
    replay_symbol: str | None
    #: simulated seconds per second (infinity: as fast as it goes)
    speed: float
    #: keep the trading sessions (core/sessions.py): no ticks, no matching outside them
    sessions: bool
    #: the exchange clock's start (it then runs at the wall clock's pace); None: the wall clock
    clock_start: datetime | None


class SimGateway(Gateway):
    """One account at the built-in simulated exchange (see the module docstring).

    ``clock`` (keyword only, default: the wall clock in China time) is the exchange's time,
    injectable so tests can cross the 20:00 trading-day boundary.
    """

    name: ClassVar[str] = "sim"

    def __init__(
        self,
        account_id: str,
        settings: SimSettingsView,
        listener: GatewayListener,
        state_dir: Path,
        *,
        external_quotes: bool = False,
        state_file: str | None = None,
        clock: Callable[[], datetime] = now,
    ) -> None:
        super().__init__(account_id, settings, listener, state_dir)
        self.initial_balance = settings.initial_balance
        self.seed = settings.seed
        self.tick_rate = settings.tick_rate
        self.sessions = settings.sessions
        self.external_quotes = external_quotes
        self.state_path = Path(state_dir) / (state_file or STATE_FILE_NAME)
        if settings.clock_start is not None and clock is now:
            clock = _shifted_clock(settings.clock_start)
        self._clock = clock
        self._engine: SimExchange | None = None
        self._subscribed: dict[str, None] = {}  # insertion-ordered set
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._journal = StateJournal(self.state_path)
        self._journal_ok = False  # False: the next change writes a snapshot instead
        self._compaction: asyncio.Handle | None = None
        self._changed_at = 0.0  # time.monotonic() of the last change journaled
        self._disk_error = ""
        self._quoted: dict[str, float] = {}  # paper: contract -> when its last real quote came
        self._source_down = ""  # paper: why the quote source is down ("" while it is up)
        self.replay_path = settings.replay
        self.replay_speed = settings.speed
        self.replay_symbol = settings.replay_symbol or ""
        self.replay_ended = False
        self._replay_task: asyncio.Task[None] | None = None
        self._replay_time: datetime | None = None  # the time of the last quote replayed
        self._replay_error = ""  # why the replay cannot run: the account stays DISCONNECTED
        self._replay_position_path = self.state_path.parent / REPLAY_POSITION_FILE
        self._replay_saved_at = datetime.min.replace(tzinfo=CHINA_TZ)  # file time of the next save

    # ------------------------------------------------------------------ Gateway interface

    async def connect(self) -> None:
        if self._engine is None:
            engine = self._engine = self._load()
            if self.replay_path and not self.external_quotes:
                self._replay_time = None
                self._start_replay(engine)  # its contract's first quote, from the file
            if self.tick_rate > 0 and not self.external_quotes:
                self._wake = asyncio.Event()
                self._task = asyncio.create_task(
                    self._run_market(engine), name=f"sim-market-{self.account_id}"
                )
        for vt_symbol in self._subscribed:
            self._push_market(vt_symbol, quote=vt_symbol != self.replay_symbol)  # that one: just shown
        self.query()  # the day so far, then CONNECTED (see gateways/base.py)
        if self._replay_error:
            self.listener.on_status(GatewayStatus.DISCONNECTED, self._replay_error)
        elif self._source_down:
            self.listener.on_status(GatewayStatus.DISCONNECTED, self._source_down)
        else:
            ready = (
                "paper exchange ready (matching real quotes)"
                if self.external_quotes
                else "sim exchange ready"
            )
            self.listener.on_status(GatewayStatus.CONNECTED, ready)

    def set_quote_source(self, source: str, up: bool, message: str = "") -> None:
        """A paper account's quote source went down or came back (the manager's word). A paper
        account's venue is its local book *and* its source's quotes: while the source is down
        there is nothing real to match against, so the account is DISCONNECTED with the
        source's reason (orders refused, strategies paused, like any venue that is down), and
        CONNECTED again, after the day's push, when the source is back."""
        if not self.external_quotes:
            return
        down = "" if up else f"quote source {source} is down ({message or 'no reason given'})"
        if down == self._source_down:
            return
        self._source_down = down
        if self._engine is None:
            return  # connect() reports it
        if down:
            self.listener.on_status(GatewayStatus.DISCONNECTED, down)
        else:
            self.query()  # the day so far, then CONNECTED (see gateways/base.py)
            self.listener.on_status(GatewayStatus.CONNECTED, "paper exchange ready (matching real quotes)")

    async def close(self) -> None:
        for task in (self._task, self._replay_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._replay_task = None
        if self.replay_path and self._replay_time is not None:
            self._save_replay_position()
        if self._compaction is not None:
            self._compaction.cancel()
            self._compaction = None
        if self._engine is not None:
            self._compact()  # one clean snapshot, with the markets' last prices
            self._journal.close()
            self._engine = None
            self.listener.on_status(GatewayStatus.DISCONNECTED, "sim exchange closed")

    def subscribe(self, vt_symbol: str) -> None:
        if sim_contracts.get_product(vt_symbol) is None:
            self.listener.on_log(
                "WARNING", f"subscribe {vt_symbol}: {sim_contracts.unknown_reason(vt_symbol)}"
            )
            return
        self._subscribed[vt_symbol] = None
        if self._engine is not None:
            self._push_market(vt_symbol)
            self._wake.set()

    def send_order(self, req: OrderRequest) -> str:
        engine = self._engine
        if engine is None:
            return self._reject_locally(req, "sim exchange not connected")
        if self.external_quotes:
            reason = self._paper_refusal(req.vt_symbol)
            if reason:
                return self._reject_locally(req, reason)
        update = engine.send_order(req)
        self._dispatch(update)
        if self._task is not None and not self._wake.is_set():
            self._wake.set()  # the order may have opened a market the task must now move
        return update.order_id

    def cancel_order(self, req: CancelRequest) -> None:
        engine = self._engine
        if engine is None:
            self.listener.on_log("WARNING", f"cancel {req.order_id}: sim exchange not connected")
            return
        try:
            update = engine.cancel_order(req.order_id)
        except SimError as exc:
            if exc.update is not None:
                self._dispatch(exc.update)
            self.listener.on_log("WARNING", str(exc))
            if exc.order is not None:
                self.listener.on_order(exc.order)
            return
        self._dispatch(update)

    def query(self) -> None:
        engine = self._engine
        if engine is None:
            self.listener.on_log("WARNING", "query: sim exchange not connected")
            return
        rolled = engine.check_roll()
        if rolled is not None:
            self._dispatch(rolled)
        listener = self.listener
        listener.on_account(engine.account())
        for position in engine.positions():
            listener.on_position(position)
        for order in engine.orders():
            listener.on_order(order)
        for trade in engine.trades():
            listener.on_trade(trade)

    def now(self) -> datetime:
        """The exchange's clock (``clock``, or ``sim.clock_start`` running on)."""
        return self._clock()

    def get_contract(self, vt_symbol: str) -> Contract | None:
        if self._engine is not None:
            return self._engine.get_contract(vt_symbol)
        return sim_contracts.get_contract(vt_symbol, self.account_id)

    def listed_contracts(self, product: str) -> list[str]:
        """Twelve consecutive months of each product (of ``product``; "" for all) from the
        month of the exchange's clock, as a futures exchange lists them (any month trades)."""
        return sim_contracts.listed_months(product, self._clock().date())

    # ------------------------------------------------------------------ manual control

    @property
    def engine(self) -> SimExchange | None:
        """The exchange engine while connected (for tests, benchmarks and tools)."""
        return self._engine

    def step(self, vt_symbol: str | None = None) -> None:
        """Move one market (or every open market) one step by hand and report the results,
        exactly as the market task does. Meant for ``tick_rate`` 0 (tests, replays)."""
        engine = self._engine
        if engine is None:
            raise RuntimeError("sim exchange not connected")
        for symbol in (vt_symbol,) if vt_symbol is not None else engine.symbols:
            self._step_one(engine, symbol)

    def flush(self) -> None:
        """Fold the journal into a fresh snapshot now (it is durable either way)."""
        if self._engine is not None:
            self._compact()

    # ------------------------------------------------------------------ internals

    def _push_market(self, vt_symbol: str, *, quote: bool = True) -> None:
        engine = self._engine
        assert engine is not None
        engine.open_market(vt_symbol)
        contract = engine.get_contract(vt_symbol)
        tick = engine.tick(vt_symbol)
        if contract is not None and tick is not None:
            self.listener.on_contract(contract)
            if not quote:
                return
            if vt_symbol == self.replay_symbol:
                if self._replay_time is None:
                    return  # a replay that could not start: no made-up quote for its contract
                tick.datetime = self._replay_time  # the file's last quote, at the file's time
            if not self.external_quotes or vt_symbol in self._quoted:  # never a made-up quote
                self.listener.on_tick(tick)  # a quote at once, not at the first step

    def _paper_refusal(self, vt_symbol: str) -> str:
        """Why a paper order cannot be matched now: no real book to match it against."""
        if sim_contracts.get_product(vt_symbol) is None:
            return f"paper account: {sim_contracts.unknown_reason(vt_symbol)}"
        if self._source_down:
            return f"paper account: {self._source_down}"
        quoted = self._quoted.get(vt_symbol)
        if quoted is None:
            return f"paper account: no real quote for {vt_symbol} yet (is its source connected?)"
        age = time.monotonic() - quoted
        if age > PAPER_QUOTE_MAX_AGE:
            return (
                f"paper account: the last real quote for {vt_symbol} is {age:.0f} s old "
                "(its source is down, or the market is closed)"
            )
        return ""

    def feed_quote(self, quote: Tick) -> None:
        """A paper account's market moves: ``quote`` is a real tick from another account."""
        engine = self._engine
        if engine is None or sim_contracts.get_product(quote.vt_symbol) is None:
            return  # a contract the sim has no spec for is not paper-tradable (see subscribe)
        if quote.vt_symbol not in engine.symbols:
            engine.open_market(quote.vt_symbol)
            contract = engine.get_contract(quote.vt_symbol)
            if contract is not None:
                self.listener.on_contract(contract)
        tick, update = engine.step(quote.vt_symbol, quote)
        tick.datetime = quote.datetime
        if update is not None:
            self._dispatch(update)  # a day roll inside clears the real quotes ...
        self._quoted[quote.vt_symbol] = time.monotonic()  # ... but this one is real
        self.listener.on_tick(tick)

    def _step_one(self, engine: SimExchange, vt_symbol: str) -> None:
        if vt_symbol == self.replay_symbol:
            return  # the file moves this one (_run_replay)
        if not engine.trading(vt_symbol):  # between sessions: no tick, only the day may turn
            rolled = engine.check_roll()
            if rolled is not None:
                self._dispatch(rolled)
            return
        tick, update = engine.step(vt_symbol)
        if vt_symbol in self._subscribed:
            self.listener.on_tick(tick)
        if update is not None:
            self._dispatch(update)

    def _dispatch(self, update: Update) -> None:
        """Make one engine update durable, then report it in order."""
        self._persist()
        if update.rolled and self.external_quotes:
            self._quoted.clear()  # the roll drew synthetic books: wait for real ones
        listener = self.listener
        for event in update.events:
            if isinstance(event, Trade):
                listener.on_trade(event)
            else:
                listener.on_order(event)
        for position in update.positions:
            listener.on_position(position)
        if update.account is not None:
            listener.on_account(update.account)

    async def _run_market(self, engine: SimExchange) -> None:
        """The one market task: step every open market ``tick_rate`` times a second, spread
        evenly; push the account about once a second."""
        loop = asyncio.get_running_loop()
        rate = self.tick_rate
        owed = 0.0
        cursor = 0
        last = loop.time()
        next_account = last + ACCOUNT_PUSH_SECONDS
        last_error = ""
        while True:
            symbols = engine.symbols
            count = len(symbols)
            if count == 0:
                self._wake.clear()
                await self._wake.wait()  # nothing to move: sleep until a subscription
                last = loop.time()
                continue
            await asyncio.sleep(max(SLICE_SECONDS, 1.0 / (count * rate)))
            moment = loop.time()
            # after a stall (a blocked loop) catch up by at most one round, never a burst
            owed = min(owed + (moment - last) * count * rate, float(count))
            last = moment
            due = int(owed)
            owed -= due
            try:
                for _ in range(due):
                    if cursor >= count:
                        cursor = 0
                    self._step_one(engine, symbols[cursor])
                    cursor += 1
                if moment >= next_account:
                    next_account = moment + ACCOUNT_PUSH_SECONDS
                    self.listener.on_account(engine.account())
            except Exception as exc:
                # keep the market alive whatever a listener does; report each new problem once
                if str(exc) != last_error:
                    last_error = str(exc)
                    log.exception("sim market step failed")
                    self.listener.on_log("ERROR", f"sim market step failed: {exc!r}")

    # ------------------------------------------------------------------ replay

    def _start_replay(self, engine: SimExchange) -> None:
        """Read the replay file, open its contract's market at the file's first quote and start
        the task that plays the rest; a file that cannot be used leaves the account
        DISCONNECTED with the reason (the entry points refuse it before anything starts)."""
        from gateways.sim_replay import ReplayFeed, ReplayFileError, file_symbol, load_position, read_replay

        self._replay_error, self.replay_ended = "", False
        self._replay_saved_at = datetime.min.replace(tzinfo=CHINA_TZ)
        path = str(self.replay_path)
        symbol = self.replay_symbol or file_symbol(path)
        if not symbol:
            self._replay_error = f"sim replay {path}: no symbol and exchange columns: set sim.replay_symbol"
            return
        self.replay_symbol = symbol
        contract = sim_contracts.get_contract(symbol, self.account_id)
        if contract is None:
            self._replay_error = f"sim replay {path}: {sim_contracts.unknown_reason(symbol)}"
            return
        try:
            data = read_replay(path, symbol, self.account_id)
        except ReplayFileError as exc:
            self._replay_error = f"sim replay: {exc}"
            return
        engine.open_market(symbol)
        quotes = iter(ReplayFeed(data, contract))
        first = next(quotes)
        played = load_position(self._replay_position_path, path)  # a restarted trader goes on from there
        if played is not None:
            for quote in quotes:  # the feed keeps the day's statistics of the quotes skipped
                if quote.datetime > played:
                    quotes = itertools.chain((quote,), quotes)
                    break
                first = quote  # the last quote played: shown again, at its own time
        listed = engine.get_contract(symbol)
        if listed is not None and symbol in self._subscribed:
            self.listener.on_contract(listed)  # before its first quote
        self._replay_quote(engine, first)
        speed = "max speed" if math.isinf(self.replay_speed) else f"{self.replay_speed:g}x"
        where = "going on after" if played is not None else "from"
        self.listener.on_log(
            "INFO",
            f"replay of {path} ({len(data)} {data.kind}) drives {symbol} at {speed}, "
            f"{where} {first.datetime:%Y-%m-%d %H:%M:%S}",
        )
        self._replay_task = asyncio.create_task(
            self._run_replay(engine, quotes, first, len(data)), name=f"sim-replay-{self.account_id}"
        )

    def _save_replay_position(self) -> None:
        """Keep where the replay got to (at most every ``REPLAY_SAVE_SECONDS`` of the file's time,
        at its end and at close), so a restarted trader goes on from there, never back in time."""
        from gateways.sim_replay import save_position

        at = self._replay_time
        if at is None:
            return
        self._replay_saved_at = at + timedelta(seconds=REPLAY_SAVE_SECONDS)
        try:
            save_position(self._replay_position_path, str(self.replay_path), at)
        except OSError as exc:
            log.warning("replay position not saved: %s", exc)

    def _replay_quote(self, engine: SimExchange, quote: Tick) -> None:
        tick, update = engine.step(quote.vt_symbol, quote)
        tick.datetime = self._replay_time = quote.datetime  # the file's time: strategies build its bars
        if quote.datetime >= self._replay_saved_at:
            self._save_replay_position()
        if update is not None:
            self._dispatch(update)
        if quote.vt_symbol in self._subscribed:
            self.listener.on_tick(tick)

    async def _run_replay(self, engine: SimExchange, quotes: Iterator[Tick], first: Tick, count: int) -> None:
        """Play the file's quotes at ``speed`` simulated seconds per second (a pause longer than
        ``REPLAY_MAX_WAIT`` seconds, a night or a weekend, is cut to it; ``max``: no pause, the
        loop given a turn every ``REPLAY_MAX_BATCH`` quotes); at the end, say so: the contract's
        market stays at its last quote."""
        speed = self.replay_speed
        previous = first.datetime
        last_error = ""
        n = 1
        for quote in quotes:
            if math.isinf(speed):
                if n % REPLAY_MAX_BATCH == 0:
                    await asyncio.sleep(0)
            else:
                wait = (quote.datetime - previous).total_seconds() / speed
                if wait > 0:
                    await asyncio.sleep(min(wait, REPLAY_MAX_WAIT))
            previous = quote.datetime
            n += 1
            try:
                self._replay_quote(engine, quote)
            except Exception as exc:  # keep the replay going whatever a listener does
                if str(exc) != last_error:
                    last_error = str(exc)
                    log.exception("sim replay step failed")
                    self.listener.on_log("ERROR", f"sim replay step failed: {exc!r}")
        self.replay_ended = True
        self._save_replay_position()
        self.listener.on_log(
            "WARNING",
            f"replay of {self.replay_path} ended at {previous:%Y-%m-%d %H:%M:%S} ({count} rows): "
            f"{self.replay_symbol} stays at its last quote",
        )

    def _reject_locally(self, req: OrderRequest, reason: str) -> str:
        """Refuse ``req`` before it reaches the exchange (not connected, no real quote for a
        paper order): a REJECTED order with a local id, like every order refused before a venue
        (the exchange's own rejections keep the exchange's ids)."""
        moment = self._clock()
        order = req.refused(self.account_id, local_order_id(moment), reason, moment)
        self.listener.on_order(order)
        return order.order_id

    # ------------------------------------------------------------------ persistence

    def _load(self) -> SimExchange:
        path = self.state_path
        try:
            state, note = load_state(path)
            if note:
                self.listener.on_log("WARNING", f"sim exchange state: {note}")
            if state is not None:
                engine = SimExchange(
                    self.account_id, seed=self.seed, clock=self._clock, state=state, sessions=self.sessions
                )
                self.listener.on_log(
                    "INFO",
                    f"sim exchange state loaded from {path} (trading day {state.trading_day}, "
                    f"{len(state.positions)} positions, {len(state.working_orders)} working orders)",
                )
                self._engine = engine
                self._compact()  # fold the replayed journal into a new snapshot
                return engine
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._quarantine(path, exc)
        engine = SimExchange(
            self.account_id,
            initial_balance=self.initial_balance,
            seed=self.seed,
            clock=self._clock,
            sessions=self.sessions,
        )
        self._engine = engine
        self._compact()  # persist the id counter and balance at once
        return engine

    def _quarantine(self, path: Path, exc: Exception) -> None:
        try:
            aside = move_aside(path, self._clock().strftime("%Y%m%d-%H%M%S"))
            moved = f"moved aside to {aside.name}"
        except OSError as move_exc:
            moved = f"could not be moved aside ({move_exc}); it will be overwritten"
        self.listener.on_log(
            "ERROR",
            f"sim exchange state {path} is unreadable ({exc}); {moved}; starting a fresh account "
            f"with balance {self.initial_balance:,.2f}",
        )

    def _persist(self) -> None:
        """Make the engine's latest changes durable: a journal line, or a snapshot when the
        change cannot be a line (the day roll) or the journal is not usable."""
        engine = self._engine
        if engine is None:
            return
        delta = engine.take_delta()
        if delta is None or not self._journal_ok:
            self._compact()
            return
        try:
            self._journal.append(delta)
        except OSError as exc:
            self._disk_trouble(exc)
            self._journal_ok = False  # the next change retries with a full snapshot
            return
        self._changed_at = time.monotonic()
        lines = self._journal.lines
        if lines < JOURNAL_COMPACT_LINES or (
            self._compaction is not None and lines < 2 * JOURNAL_COMPACT_LINES
        ):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._compact()
            return
        if self._compaction is not None:
            self._compaction.cancel()
        if lines >= 2 * JOURNAL_COMPACT_LINES:  # changes that never pause: right after this one
            self._compaction = loop.call_soon(self._compact)
        else:  # after this change is reported, once the orders pause: never on the order path
            self._compaction = loop.call_later(COMPACT_QUIET_SECONDS, self._compact_when_quiet)

    def _compact_when_quiet(self) -> None:
        """Compact once no change has come for ``COMPACT_QUIET_SECONDS``."""
        self._compaction = None
        quiet = time.monotonic() - self._changed_at
        if quiet < COMPACT_QUIET_SECONDS:
            loop = asyncio.get_running_loop()
            self._compaction = loop.call_later(COMPACT_QUIET_SECONDS - quiet, self._compact_when_quiet)
            return
        self._compact()

    def _compact(self) -> None:
        """Write a new snapshot generation and start its (empty) journal."""
        self._compaction = None
        engine = self._engine
        if engine is None:
            return
        state = engine.to_state(new_generation=True)
        try:
            self._journal.compact(state)
        except OSError as exc:
            self._disk_trouble(exc)
            self._journal_ok = False
            return
        self._journal_ok = True
        self._disk_error = ""

    def _disk_trouble(self, exc: OSError) -> None:
        # trading goes on from memory; say so once per distinct problem, not on every order
        if str(exc) != self._disk_error:
            self._disk_error = str(exc)
            self.listener.on_log("ERROR", f"could not save sim exchange state to {self.state_path}: {exc}")
