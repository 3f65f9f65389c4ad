"""The strategy engine of one trader: instances, signals, triggers, execution.

Detection is separate from execution (ARCHITECTURE.md, "Strategies"): strategies only *emit*
signals. Every signal becomes a strategy trigger record (persisted, then
streamed) with its result: ``not executed`` when auto-trading is off or the
venue is down, ``rejected`` when validation or risk refuses it, ``success``
when the order went to the venue, ``failed`` when something broke. Validation
before execution: the position to close is still there, the signal is not
older than 60 s, and the same signal was not executed in the last 5 minutes.

A strategy that raises is stopped and reported; the trader and the other
instances carry on. Exits are kept at the market (core/exit_chase.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from config.schema import StrategyConfig
from core.exit_chase import ExitChaser
from core.models import (
    Account,
    Bar,
    ConditionalRequest,
    Contract,
    Direction,
    GatewayStatus,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Position,
    StrategyState,
    StrategyTrigger,
    Tick,
    Trade,
    TradingState,
    now,
)
from core.oms import Oms
from core.protocol import MessageType, Reply

if TYPE_CHECKING:
    from storage import AccountDatabase
    from strategies.base import Signal, Strategy

STALE_AFTER = 60.0  # seconds: an older signal is not executed
DUPLICATE_WINDOW = 300.0  # seconds: the same signal executed within this is not repeated
MAX_WARM_UP_BARS = 20_000  # stored 1-minute bars replayed into a new instance, at most
REPLAY_TRADES = 20_000  # recorded trades read back to rebuild instances' own positions
STATE_FILE = "strategies.json"  # the instances' variables, in the trader's state directory


class EngineHost(Protocol):
    """What the engine needs from its trader."""

    account_id: str
    oms: Oms
    db: AccountDatabase | None
    auto_trading: bool
    gateway_status: GatewayStatus
    trading_state: TradingState
    #: HALTED by a kill switch that kept the protective strategies: their closes still go
    protective_kept: bool
    log: logging.Logger

    def place_order(self, req: OrderRequest) -> Reply: ...
    def cancel_order(self, order_id: str) -> Reply: ...
    def emit(self, msg_type: MessageType, data: Any) -> None: ...
    def create_conditional(self, req: ConditionalRequest) -> Reply: ...
    def cancel_conditional(self, cond_id: str, *, reference: str) -> Reply: ...


class StrategyEngine:
    """Runs the account's strategy instances inside the trader."""

    def __init__(
        self,
        host: EngineHost,
        configs: list[StrategyConfig],
        *,
        search_path: str | None = None,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.host = host
        self.configs = configs
        self.search_path = search_path
        self.clock = clock
        self.instances: dict[str, Strategy] = {}
        self.by_symbol: dict[str, list[Strategy]] = defaultdict(list)
        self.errors: dict[str, str] = {}
        self._executed: dict[tuple[str, str], datetime] = {}
        self._bar_builders: dict[str, Any] = {}  # vt_symbol -> vnpy BarGenerator (bars for warm-up)
        self._dirty: set[str] = set()
        self._queue: list[Callable[[], Any]] = []  # what waits for the gateway event to end
        self._drain_scheduled = False
        self.exits = ExitChaser(host, clock=clock, price=self._price, passes_halt=self.passes_halt)
        self._saved_text = ""  # the variables as last written
        self._calls = 0  # orders strategies priced themselves (``place``): each its own decision

    @property
    def logger(self) -> logging.Logger:
        return self.host.log

    @property
    def symbols(self) -> list[str]:
        return list(self.by_symbol)

    # ================================================================== lifecycle

    def load(self, *, autostart: bool | Literal["protective"] = True) -> None:
        """Create every configured instance; a broken one is reported, the others load.
        ``autostart=False`` (a HALTED account) loads them stopped; ``"protective"`` (HALTED by
        a kill switch that kept the protective strategies) starts only those."""
        from strategies import load_strategy_class

        loaded: list[tuple[StrategyConfig, Strategy]] = []
        for cfg in self.configs:
            try:
                cls = load_strategy_class(cfg.class_name, self.search_path)
                inst = cls(self, cfg.name, cfg.symbol, cfg.params, cfg.risk)
            except Exception as exc:
                self.errors[cfg.name] = str(exc)
                self.logger.error("strategy %s (%s) cannot load: %s", cfg.name, cfg.class_name, exc)
                self.host.emit("strategy", self._broken_state(cfg, str(exc)))
                continue
            self.instances[cfg.name] = inst
            self.by_symbol[cfg.symbol].append(inst)
            loaded.append((cfg, inst))
        self._replay_trades()  # all instances at once: a guard's closes belong to the others
        saved = self._read_saved()
        for cfg, inst in loaded:
            if cfg.name in saved:
                self._guard(inst, "restore_state", lambda inst=inst: inst.restore_state(saved[inst.name]))
            self._warm_up(inst)
            self._guard(inst, "on_init", inst.on_init)
            if cfg.autostart and (autostart is True or (autostart == "protective" and inst.PROTECTIVE)):
                self.start(cfg.name)
            else:
                self._publish(inst)

    def _broken_state(self, cfg: StrategyConfig, error: str) -> StrategyState:
        return StrategyState(
            account_id=self.host.account_id,
            name=cfg.name,
            class_name=cfg.class_name,
            vt_symbol=cfg.symbol,
            running=False,
            params=dict(cfg.params),
            error=error,
        )

    def _replay_trades(self) -> None:
        """After a restart the instances' own positions come back from their recorded trades,
        booked exactly as they were live (``_book``)."""
        db = self.host.db
        if db is None or not self.instances:
            return
        counts: dict[str, int] = defaultdict(int)
        for trade in db.load_trades(limit=REPLAY_TRADES):
            for inst in self._book(trade):
                counts[inst.name] += 1
        for name, count in counts.items():
            inst = self.instances[name]
            self.logger.info("strategy %s: position %+g from %d recorded trades", name, inst.pos, count)

    def _book(self, trade: Trade) -> list[Strategy]:
        """Book a trade to its instance. The lots a close takes beyond what that instance
        holds (a stop guard closing the account's position) are the other instances' lots
        of that side and symbol: they are booked to them, in configuration order, so no
        instance keeps lots that are gone. Returns the instances that booked some of it."""
        inst = self.instances.get(trade.reference)
        if inst is None or trade.vt_symbol != inst.vt_symbol:
            return []
        booked = [inst]
        if trade.offset.is_close:
            side = trade.direction.opposite  # a SELL close takes long lots
            excess = trade.volume - inst.leg_volume(side)
            for other in self.by_symbol.get(trade.vt_symbol, ()):
                if excess <= 1e-9:
                    break
                take = min(other.leg_volume(side), excess) if other is not inst else 0.0
                if take > 1e-9:
                    other.apply_trade(msgspec.structs.replace(trade, volume=take, commission=0.0))
                    booked.append(other)
                    excess -= take
                    self.logger.info(
                        "strategy %s: %g %s lot(s) closed by %s (trade %s)",
                        other.name,
                        take,
                        side.name.lower(),
                        inst.name,
                        trade.trade_id,
                    )
        inst.apply_trade(trade)
        return booked

    def _warm_up(self, inst: Strategy) -> None:
        db = self.host.db
        minutes = inst.warm_up_minutes
        if db is None or minutes <= 0:
            return
        bars = db.load_bars(inst.vt_symbol, limit=min(minutes + 10, MAX_WARM_UP_BARS))
        if bars and not self._guard(inst, "warm_up", lambda: inst.warm_up(bars)):
            return
        if bars:
            self.logger.info("strategy %s warmed up on %d stored bars", inst.name, len(bars))

    def start(self, name: str) -> Reply:
        inst = self.instances.get(name)
        if inst is None:
            return self._unknown(name)
        if inst.running:
            return Reply(ok=True, result=inst.state())
        inst.error = ""
        inst.running = True
        if not self._guard(inst, "on_start", inst.on_start):
            return Reply(ok=False, error=f"{name} failed to start: {inst.error}")
        self.logger.info("strategy %s started", name)
        self._publish(inst)
        return Reply(ok=True, result=inst.state())

    def stop(self, name: str) -> Reply:
        inst = self.instances.get(name)
        if inst is None:
            return self._unknown(name)
        if inst.running:
            inst.running = False
            self._guard(inst, "on_stop", inst.on_stop)
            self.logger.warning("strategy %s stopped", name)
        self._publish(inst)
        return Reply(ok=True, result=inst.state())

    def stop_all(self, *, keep_protective: bool = False) -> int:
        """Stop every running instance (but the protective ones, if told); how many stopped."""
        running = [
            name
            for name, inst in self.instances.items()
            if inst.running and not (keep_protective and inst.PROTECTIVE)
        ]
        for name in running:
            self.stop(name)
        self.save_state()
        return len(running)

    def protective_running(self) -> list[str]:
        """The running protective instances (the kill switch may keep them)."""
        return [name for name, inst in self.instances.items() if inst.running and inst.PROTECTIVE]

    def passes_halt(self, name: str) -> bool:
        """Whether instance ``name``'s closing orders go out while the account is HALTED: it
        is protective and running, and the kill switch kept the protective strategies."""
        inst = self.instances.get(name)
        return self.host.protective_kept and inst is not None and inst.running and inst.PROTECTIVE

    # ------------------------------------------------------------------ strategies' own memory

    @property
    def _state_path(self) -> Path | None:
        state_dir = getattr(self.host, "state_dir", None)
        return Path(state_dir) / STATE_FILE if state_dir is not None else None

    def _read_saved(self) -> dict[str, Any]:
        path = self._state_path
        if path is None:
            return {}
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.logger.error("ignoring unreadable %s: %s", path, exc)
            return {}
        return saved if isinstance(saved, dict) else {}

    def save_state(self) -> None:
        """Write the instances' ``variables`` when they changed (about once a second, on stop)."""
        path = self._state_path
        if path is None:
            return
        states = {n: i.saved_state() for n, i in self.instances.items() if i.variables}
        if not states:
            return
        try:
            text = json.dumps(states, sort_keys=True)
        except (TypeError, ValueError) as exc:
            self.logger.error("strategy variables cannot be saved: %s", exc)
            return
        if text == self._saved_text:
            return
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            self._saved_text = text
        except OSError:
            self.logger.exception("saving the strategies' variables failed")

    def _unknown(self, name: str) -> Reply:
        known = ", ".join(self.instances) or "none"
        if name in self.errors:
            return Reply(ok=False, error=f"strategy {name} did not load: {self.errors[name]}")
        return Reply(
            ok=False, error=f"unknown strategy instance '{name}' in {self.host.account_id} (known: {known})"
        )

    def states(self) -> list[StrategyState]:
        return [inst.state() for inst in self.instances.values()]

    def _publish(self, inst: Strategy) -> None:
        self.host.emit("strategy", inst.state())

    def on_timer(self) -> None:
        """About once a second: close bars whose minute is over (a quiet contract or a session
        break would otherwise hold the last bar, and its signal, until the next tick)."""
        at = self.clock()
        for inst in self.instances.values():
            if inst.running and inst.am is not None:
                self._guard(inst, "flush_bar", lambda inst=inst: inst.flush_bar(at))
        self.publish_dirty()
        self.save_state()

    def publish_dirty(self) -> None:
        """Send the states whose P&L or position moved."""
        for name in self._dirty:
            inst = self.instances.get(name)
            if inst is not None:
                self._publish(inst)
        self._dirty.clear()

    def _guard(self, inst: Strategy, what: str, call: Callable[[], Any]) -> bool:
        """Run strategy code; an exception stops that instance only, and says why."""
        try:
            call()
        except Exception as exc:
            inst.running = False
            inst.error = f"{what}: {type(exc).__name__}: {exc}"
            self.logger.exception("strategy %s raised in %s: stopped", inst.name, what)
            self._publish(inst)
            return False
        return True

    # ================================================================== events

    def on_tick(self, tick: Tick) -> None:
        self.exits.on_tick(tick)
        insts = self.by_symbol.get(tick.vt_symbol)
        if not insts:
            return
        if any(inst.stores_bars for inst in insts):  # tick-only strategies need no bars (nor vnpy)
            self._build_bar(tick)
        for inst in insts:
            if inst.running or (inst.TICKS_WHEN_STOPPED and not inst.error):
                self._guard(inst, "on_tick", lambda inst=inst: inst.on_tick(tick))
                self._dirty.add(inst.name)

    def on_order(self, order: Order) -> None:
        inst = self.instances.get(order.reference)
        if inst is not None:
            self._guard(inst, "on_order", lambda: inst.on_order(order))
        self.exits.on_order(order)

    def on_trade(self, trade: Trade) -> None:
        booked = self._book(trade)  # the instances' own positions and P&L
        if not booked:
            return
        inst = booked[0]
        if inst.running:
            self._guard(inst, "on_trade", lambda: inst.on_trade(trade))
        for each in booked:
            self._publish(each)

    def _build_bar(self, tick: Tick) -> None:
        """1-minute bars of strategy symbols (vnpy's BarGenerator), stored for the next warm-up."""
        try:
            builder = self._bar_builders.get(tick.vt_symbol)
            if builder is None:
                from vnpy.trader.utility import BarGenerator

                def save(vn_bar: Any, vt_symbol: str = tick.vt_symbol) -> None:
                    self._save_bar(vt_symbol, vn_bar)

                builder = self._bar_builders[tick.vt_symbol] = BarGenerator(save)
            from strategies.base import to_vn_tick

            builder.update_tick(to_vn_tick(tick))
        except Exception:  # bars are for warm-up only: never let them stop the ticks
            self.logger.exception("building bars of %s failed", tick.vt_symbol)

    def _save_bar(self, vt_symbol: str, vn_bar: Any) -> None:
        db = self.host.db
        if db is None:
            return
        bar = Bar(
            account_id=self.host.account_id,
            vt_symbol=vt_symbol,
            interval="1m",
            datetime=vn_bar.datetime,
            open_price=vn_bar.open_price,
            high_price=vn_bar.high_price,
            low_price=vn_bar.low_price,
            close_price=vn_bar.close_price,
            volume=vn_bar.volume,
            turnover=vn_bar.turnover,
            open_interest=vn_bar.open_interest,
        )
        try:
            db.save_bar(bar)
        except Exception:
            self.logger.exception("saving a bar of %s failed", vt_symbol)

    # ================================================================== StrategyContext

    def account(self) -> Account | None:
        return self.host.oms.account

    def position(self, vt_symbol: str, direction: Direction) -> Position | None:
        return self.host.oms.position(vt_symbol, direction)

    def contract(self, vt_symbol: str) -> Contract | None:
        return self.host.oms.contracts.get(vt_symbol)

    def log(self, strategy: Strategy, level: str, message: str) -> None:
        self.logger.log(logging.getLevelName(level.upper()), "[%s] %s", strategy.name, message)

    def emit(self, strategy: Strategy, signal: Signal) -> None:
        """A strategy decided something: record it, validate it, maybe execute it.

        Inside a gateway event (a fill reported while an order is being sent, a tick being
        handled) the signal waits until the event is over: executing it there would send an
        order from within the venue's own processing, ahead of that event's bookkeeping.
        """
        self._after_event(lambda: self._handle(strategy, signal))

    def defer(self, strategy: Strategy, what: str, call: Callable[[], Any]) -> None:
        """Run strategy code after the gateway event being handled (now when there is none), in
        order with the signals, under the engine's guard (``what`` names it if it raises). A vnpy
        template's callbacks come this way: it sends orders from them, as from vnpy's event queue."""
        self._after_event(lambda: self._guard(strategy, what, call))

    def _after_event(self, call: Callable[[], Any]) -> None:
        if getattr(self.host, "_event_depth", 0) > 0:
            self._queue.append(call)
            if not self._drain_scheduled:
                self._drain_scheduled = True
                asyncio.get_running_loop().call_soon(self._drain)
            return
        call()

    def _drain(self) -> None:
        self._drain_scheduled = False
        queue, self._queue = self._queue, []
        for call in queue:
            call()

    def _handle(self, strategy: Strategy, signal: Signal) -> None:
        trigger = StrategyTrigger(
            account_id=self.host.account_id,
            datetime=signal.datetime,
            instance=strategy.name,
            vt_symbol=strategy.vt_symbol,
            condition=signal.condition,
            price=signal.price,
            action=signal.action,
            result="pending",
        )
        try:
            self._decide(strategy, signal, trigger)
        except Exception as exc:  # a bug here must not lose the record of the decision
            self.logger.exception("executing a signal of %s failed", strategy.name)
            trigger.result, trigger.error = "failed", f"{type(exc).__name__}: {exc}"
        self._record(trigger)

    def _record(self, trigger: StrategyTrigger) -> None:
        db = self.host.db
        if db is not None:
            try:
                db.save_trigger(trigger)  # persisted before it is reported
            except Exception:
                self.logger.exception("saving a strategy trigger failed")
        self.host.emit("trigger", trigger)

    def _decide(self, strategy: Strategy, signal: Signal, trigger: StrategyTrigger) -> None:
        if signal.action == "hold":
            trigger.result = "not executed"
            return
        if not self.host.auto_trading:
            trigger.result, trigger.error = "not executed", "auto-trading is off"
            return
        if self.host.trading_state is TradingState.HALTED and not (
            signal.action == "close" and self.passes_halt(strategy.name)
        ):
            trigger.result, trigger.error = "not executed", "account HALTED"
            return
        if self.host.gateway_status is not GatewayStatus.CONNECTED:
            trigger.result = "not executed"
            trigger.error = f"venue {self.host.gateway_status.name.lower()}: execution paused"
            return
        problem = self._validate(strategy, signal)
        if problem is not None:
            trigger.result, trigger.error = "rejected", problem
            return
        replies = self._execute(strategy, signal)
        ids = [
            str(r.result.get("order_id"))
            for r in replies
            if isinstance(r.result, dict) and r.result.get("order_id")
        ]
        trigger.order_id = ",".join(ids)
        errors = [r.error for r in replies if not r.ok]
        if errors and not any(r.ok for r in replies):
            trigger.result, trigger.error = "rejected", "; ".join(errors)
            return
        if errors:  # e.g. a turn-around: the close went out, the open was refused
            sent = [str(r.result.get("order_id")) for r in replies if r.ok and isinstance(r.result, dict)]
            trigger.result = "partial"
            trigger.error = f"sent {', '.join(sent)}; refused: {'; '.join(errors)}"
        else:
            trigger.result = "success"
        moment = self.clock()
        self._executed[(strategy.name, signal.key or signal.action)] = moment
        if len(self._executed) > 1000:  # keys are per event: forget those past the window
            self._executed = {
                k: t for k, t in self._executed.items() if (moment - t).total_seconds() < DUPLICATE_WINDOW
            }

    def _validate(self, strategy: Strategy, signal: Signal) -> str | None:
        moment = self.clock()
        age = (moment - signal.datetime).total_seconds()
        if age > STALE_AFTER:
            return f"stale: signal {age:.0f} s old > {STALE_AFTER:g} s"
        last = self._executed.get((strategy.name, signal.key or signal.action))
        if last is not None and (moment - last).total_seconds() < DUPLICATE_WINDOW:
            ago = (moment - last).total_seconds()
            return f"duplicate: the same signal was executed {ago:.0f} s ago (window {DUPLICATE_WINDOW:g} s)"
        if signal.volume <= 0:
            return f"volume: {signal.volume:g} lots"
        if signal.action == "close":
            direction = self._close_direction(strategy, signal)
            if direction is None:
                return "close: the instance holds no position"
            closable = self.host.oms.closable(strategy.vt_symbol, direction).total
            if closable < signal.volume:
                return f"close: closable {closable:g} < {signal.volume:g} ({direction.name.lower()} {strategy.vt_symbol})"
            return None
        side = 1 if signal.action == "buy" else -1
        return self._beyond_max_position(strategy, side * signal.volume)

    def _beyond_max_position(self, strategy: Strategy, change: float) -> str | None:
        """Why moving the instance's position by ``change`` lots is refused, if it is."""
        limit = strategy.risk.max_position
        working = self._working(strategy)
        projected = strategy.pos + working  # where the instance stands once its orders fill
        after = projected + change
        if abs(after) > limit and abs(after) > abs(projected):
            held = f"{strategy.pos:+g}" + (f" ({working:+g} working)" if working else "")
            return f"max_position: instance position {held} -> {after:+g} > limit {limit}"
        return None

    def _working(self, strategy: Strategy) -> float:
        """Lots this instance's working orders will move its position by (+ buys, - sells),
        opens and closes alike: not yet in ``pos``. A grid that sold a level and buys it back
        before the sale is reported holds no more than before. The cost: a close that then fails
        (refused, cancelled) leaves the instance above its limit by that close's lots, until its
        next close; exits are kept at the market (exit chasing), and the account's own
        ``max_position_per_contract`` still holds."""
        lots = 0.0
        for order in self.host.oms.active_orders.values():
            if order.reference == strategy.name and order.vt_symbol == strategy.vt_symbol:
                lots += order.remaining if order.direction is Direction.LONG else -order.remaining
        return lots

    @staticmethod
    def _close_direction(strategy: Strategy, signal: Signal) -> Direction | None:
        if signal.direction is not None:
            return signal.direction
        if strategy.pos > 0:
            return Direction.LONG
        if strategy.pos < 0:
            return Direction.SHORT
        return None

    # ================================================================== orders a strategy prices itself

    def place(
        self,
        strategy: Strategy,
        *,
        direction: Direction,
        offset: Offset,
        price: float,
        volume: float,
        condition: str,
        action: str,
    ) -> list[str]:
        """An order whose price and offset the strategy chose (a vnpy template's ``buy`` /
        ``sell`` / ``short`` / ``cover``, strategies/cta_host.py), sent now: recorded as a trigger
        (``condition`` = the strategy's call), through the same switches as a signal (auto-
        trading, the HALT, the venue), the instance's ``max_position`` for an open, and the
        trader's risk rules with the instance's name; a CLOSE on SHFE/INE goes out as the close
        policy's legs (the trader's ``place_order``). Each call is its own decision (the
        duplicate rule never joins two). Returns the ids of the orders that went out: none when
        not executed or refused (a refused order is kept and reported REJECTED)."""
        trigger = StrategyTrigger(
            account_id=self.host.account_id,
            datetime=strategy.now,
            instance=strategy.name,
            vt_symbol=strategy.vt_symbol,
            condition=condition,
            price=price,
            action=action,
            result="pending",
        )
        sent: list[str] = []
        try:
            sent = self._place(strategy, trigger, direction, offset, price, volume)
        except Exception as exc:  # a bug here must not lose the record of the decision
            self.logger.exception("sending an order of %s failed", strategy.name)
            trigger.result, trigger.error = "failed", f"{type(exc).__name__}: {exc}"
        self._record(trigger)
        return sent

    def _place(
        self,
        strategy: Strategy,
        trigger: StrategyTrigger,
        direction: Direction,
        offset: Offset,
        price: float,
        volume: float,
    ) -> list[str]:
        closing = offset.is_close
        if not self.host.auto_trading:
            trigger.result, trigger.error = "not executed", "auto-trading is off"
            return []
        if self.host.trading_state is TradingState.HALTED and not (
            closing and self.passes_halt(strategy.name)
        ):
            trigger.result, trigger.error = "not executed", "account HALTED"
            return []
        if self.host.gateway_status is not GatewayStatus.CONNECTED:
            trigger.result = "not executed"
            trigger.error = f"venue {self.host.gateway_status.name.lower()}: execution paused"
            return []
        if volume <= 0:
            trigger.result, trigger.error = "rejected", f"volume: {volume:g} lots"
            return []
        if not closing:
            side = 1 if direction is Direction.LONG else -1
            problem = self._beyond_max_position(strategy, side * volume)
            if problem is not None:
                trigger.result, trigger.error = "rejected", problem
                return []
        self._calls += 1
        req = OrderRequest(
            vt_symbol=strategy.vt_symbol,
            direction=direction,
            offset=offset,
            type=OrderType.LIMIT,
            price=price,
            volume=volume,
            reference=strategy.name,
            account_id=self.host.account_id,
            decision=f"{strategy.name}:call{self._calls}",
        )
        reply = self.host.place_order(req)
        result = reply.result if isinstance(reply.result, dict) else {}
        trigger.order_id = str(result.get("order_id") or "")
        legs = result.get("orders") or [result]
        sent = [str(leg["order_id"]) for leg in legs if leg.get("order_id") and leg.get("status")]
        if reply.ok:
            trigger.result = "success"
        else:
            trigger.result, trigger.error = ("partial" if sent else "rejected"), reply.error
        return sent

    def place_conditional(self, strategy: Strategy, req: ConditionalRequest) -> Reply:
        """Arm a conditional order held by the trader for ``strategy`` (a CTA-style stop order
        is one, core/conditional.py): it lives in the account's database, outlives restarts and
        fires once, its order sent with the instance's name through the trader's risk rules and
        only while auto-trading is on. Recorded as a trigger (the call is the condition).
        ``result["cond_id"]`` names it for ``cancel_conditional``."""
        req.reference = strategy.name
        req.account_id = self.host.account_id
        reply = self.host.create_conditional(req)
        result = reply.result if isinstance(reply.result, dict) else {}
        self._record(
            StrategyTrigger(
                account_id=self.host.account_id,
                datetime=strategy.now,
                instance=strategy.name,
                vt_symbol=req.vt_symbol,
                condition=f"conditional order {result.get('words', '')}".strip(),
                price=req.trigger_price,
                action="conditional",
                result="success" if reply.ok else "rejected",
                order_id=str(result.get("cond_id", "")),
                error=reply.error,
            )
        )
        return reply

    def cancel_conditional(self, strategy: Strategy, cond_id: str) -> Reply:
        """Cancel one of ``strategy``'s own conditional orders."""
        return self.host.cancel_conditional(cond_id, reference=strategy.name)

    def cancel(self, strategy: Strategy, order_id: str) -> str | None:
        """Cancel one of ``strategy``'s working orders; the reason when it was not sent."""
        order = self.host.oms.orders.get(order_id)
        if order is None or order.reference != strategy.name:
            return f"order {order_id} is not one of {strategy.name}'s"
        reply = self.host.cancel_order(order_id)
        return None if reply.ok else reply.error

    def load_bars(self, vt_symbol: str, since: datetime) -> list[Bar]:
        """The account's stored 1-minute bars of ``vt_symbol`` from ``since`` on, oldest first
        (at most ``MAX_WARM_UP_BARS``)."""
        db = self.host.db
        if db is None:
            return []
        bars = db.load_bars(vt_symbol, limit=MAX_WARM_UP_BARS)
        return [bar for bar in bars if bar.datetime >= since]

    def publish_later(self, strategy: Strategy) -> None:
        """Send the instance's state with the next timer (vnpy's ``put_event``)."""
        self._dirty.add(strategy.name)

    def _price(self, vt_symbol: str, direction: Direction, fallback: float) -> float:
        """A marketable limit: the opposite best price (never a market order from a strategy)."""
        tick = self.host.oms.ticks.get(vt_symbol)
        if tick is not None:
            best = tick.ask_price_1 if direction is Direction.LONG else tick.bid_price_1
            if best:
                return best
        contract = self.contract(vt_symbol)
        return contract.round_price(fallback) if contract is not None else fallback

    def _execute(self, strategy: Strategy, signal: Signal) -> list[Reply]:
        vt = strategy.vt_symbol
        if signal.action == "close":
            direction = self._close_direction(strategy, signal)
            assert direction is not None
            return self._close(strategy, direction, signal.volume, signal.price, _decision(strategy, signal))
        order_direction = Direction.LONG if signal.action == "buy" else Direction.SHORT
        replies: list[Reply] = []
        volume = signal.volume
        # turning around: first close what the instance holds on the other side
        opposite = order_direction.opposite
        held = -strategy.pos if order_direction is Direction.LONG else strategy.pos
        if held > 0:
            closing = min(held, volume)
            replies += self._close(strategy, opposite, closing, signal.price, _decision(strategy, signal))
            volume -= closing
            if any(not r.ok for r in replies):
                return replies
        if volume > 0:
            req = OrderRequest(
                vt_symbol=vt,
                direction=order_direction,
                offset=Offset.OPEN,
                type=OrderType.LIMIT,
                price=self._price(vt, order_direction, signal.price),
                volume=volume,
                reference=strategy.name,
                account_id=self.host.account_id,
                decision=_decision(strategy, signal),
            )
            replies.append(self.host.place_order(req))
        return replies

    def _close(
        self, strategy: Strategy, direction: Direction, volume: float, ref_price: float, decision: str = ""
    ) -> list[Reply]:
        price = self._price(strategy.vt_symbol, direction.opposite, ref_price)
        try:
            requests = self.host.oms.close_requests(
                strategy.vt_symbol, direction, volume, price, reference=strategy.name
            )
        except ValueError as exc:
            return [Reply(ok=False, error=str(exc))]
        for req in requests:
            req.decision = decision
        replies = [self.host.place_order(req) for req in requests]
        for reply in replies:  # exits that did not fill at once are kept at the market
            if reply.ok and isinstance(reply.result, dict) and reply.result.get("order_id"):
                self.exits.follow(str(reply.result["order_id"]), strategy.name)
        return replies


def _decision(strategy: Strategy, signal: Signal) -> str:
    """What the orders of one signal carry out (``OrderRequest.decision``): the instance and the
    signal's key; empty when the strategy gave no key (its orders are then checked for duplicates
    like the operator's)."""
    return f"{strategy.name}:{signal.key}" if signal.key else ""
