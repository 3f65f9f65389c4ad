"""vnpy CtaTemplate strategies run unchanged inside a trader (strategies/cta_host.py).

Real in-process traders on the sim: the seven strategies shipped in ``vnpy_ctastrategy.strategies``
load from config, ``load_bar`` their history from the account's stored 1-minute bars (seeded here)
and run; DoubleMa trades, each order an attributed order with a trigger. A small template of the
test's own (in ``strategy_path``) drives stop orders, ``sync_data``, the SHFE close split and the
risk rules through the same host.
"""

from __future__ import annotations

import asyncio
import json
import random
import textwrap
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from core.models import Bar, Direction, GatewayStatus, Offset, OrderRequest, Position, Status, now
from core.trader import Trader
from gateways import sim_contracts
from gateways.sim import SimGateway
from storage.database import AccountDatabase, database_path
from strategies import StrategyError, load_strategy_class
from strategies.cta_host import CtaHost
from tests.conftest import CoreEnv, sim_account, wait_until

RB = "rb2705.SHFE"

SHIPPED = {
    "atr_rsi": "atr_rsi_strategy:AtrRsiStrategy",
    "boll": "boll_channel_strategy:BollChannelStrategy",
    "double_ma": "double_ma_strategy:DoubleMaStrategy",
    "dual_thrust": "dual_thrust_strategy:DualThrustStrategy",
    "king_keltner": "king_keltner_strategy:KingKeltnerStrategy",
    "multi_tf": "multi_timeframe_strategy:MultiTimeframeStrategy",
    "turtle": "turtle_signal_strategy:TurtleSignalStrategy",
}

PROBE = textwrap.dedent(
    """
    from vnpy_ctastrategy import CtaTemplate


    class Probe(CtaTemplate):
        \"\"\"Sends what the test tells it; records what the engine gives it.\"\"\"

        author = "tests"
        fixed_size: int = 1
        counter: int = 0
        parameters = ["fixed_size"]
        variables = ["counter"]

        def on_init(self):
            self.bars = 0
            self.ticks = 0
            self.orders = []
            self.trades = []
            self.stops = []
            self.counter = -1  # what on_init computes; a restored value wins over it
            self.load_bar(2)

        def on_bar(self, bar):
            self.bars += 1

        boom = False
        buy_on_tick = False
        in_tick = False

        def on_tick(self, tick):
            self.ticks += 1
            if self.boom:
                raise RuntimeError("template bug")
            if self.buy_on_tick:
                self.buy_on_tick = False
                self.in_tick = True
                self.sent = self.buy(tick.ask_price_1, 1)
                self.in_tick = False

        def on_order(self, order):
            self.orders.append((order.vt_orderid, order.status.name, order.offset.name))

        def on_trade(self, trade):
            self.trades.append((trade.vt_orderid, trade.offset.name, self.pos))
            self.trade_inside_tick = self.in_tick

        oco = ()  # stop ids that cancel each other: one triggered cancels the rest

        def on_stop_order(self, stop_order):
            self.stops.append((stop_order.stop_orderid, stop_order.status.name, list(stop_order.vt_orderids)))
            if stop_order.status.name == "TRIGGERED" and stop_order.stop_orderid in self.oco:
                for other in self.oco:
                    if other != stop_order.stop_orderid:
                        self.cancel_order(other)
    """
)


def _seed_bars(core_env: CoreEnv, account_id: str, vt_symbol: str, count: int, *, seed: int = 7) -> None:
    """``count`` 1-minute bars ending at the current minute, a seeded walk near the product's price."""
    spec = sim_contracts.get_product(vt_symbol)
    assert spec is not None
    rng = random.Random(seed)
    core_env.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    end = now().replace(second=0, microsecond=0)
    price = spec.base_price
    bars = []
    for i in range(count):
        start = end - timedelta(minutes=count - i)
        close = max(price + rng.choice((-3, -2, -1, 0, 1, 2, 3)) * 1.0, 1.0)
        bars.append(
            Bar(
                account_id=account_id,
                vt_symbol=vt_symbol,
                interval="1m",
                datetime=start,
                open_price=price,
                high_price=max(price, close) + 1,
                low_price=min(price, close) - 1,
                close_price=close,
                volume=10,
                turnover=close * 10 * 10,
                open_interest=1000,
            )
        )
        price = close
    with AccountDatabase(database_path(core_env.data_dir, account_id)) as db:
        db.save_bars(bars)


def _entry(name: str, cls: str, *, setting: str = "", max_position: int = 10) -> str:
    return f"""
      - name: {name}
        class: {cls}
        symbol: {RB}
        risk: {{max_position: {max_position}}}
{f"        setting: {setting}" if setting else ""}
"""


async def _start(core_env: CoreEnv, accounts_yaml: str, extra: str = "") -> tuple[Trader, asyncio.Task[None]]:
    config = core_env.write_config(accounts_yaml, extra=extra)
    t = Trader(config.accounts[0], config, data_dir=core_env.data_dir, socket_path=None)
    task = asyncio.create_task(t.run())
    await wait_until(lambda: t.strategies is not None and t.gateway_status is GatewayStatus.CONNECTED)
    await wait_until(lambda: RB in t.oms.ticks, what="a first tick")
    return t, task


async def _stop(t: Trader, task: asyncio.Task[None]) -> None:
    t.stop()
    await task


def _host(t: Trader, name: str) -> CtaHost:
    assert t.strategies is not None
    inst = t.strategies.instances[name]
    assert isinstance(inst, CtaHost)
    return inst


def _vn_bar(t: Trader, close: float, minute: int, base: Any) -> Any:
    from vnpy.trader.constant import Exchange, Interval
    from vnpy.trader.object import BarData

    return BarData(
        symbol="rb2705",
        exchange=Exchange.SHFE,
        datetime=base + timedelta(minutes=minute),
        interval=Interval.MINUTE,
        open_price=close,
        high_price=close + 2,
        low_price=close - 2,
        close_price=close,
        volume=10,
        gateway_name=t.account_id,
    )


async def test_the_seven_shipped_strategies_load_and_run_and_double_ma_trades(core_env: CoreEnv) -> None:
    _seed_bars(core_env, "CT1", RB, 1600)
    entries = "".join(_entry(name, f"vnpy_ctastrategy.strategies.{cls}") for name, cls in SHIPPED.items())
    risk = "    risk: {max_orders_per_second: 1000}\n"  # the test feeds 7 strategies 50 bars at once
    t, task = await _start(core_env, sim_account("CT1", RB, rate=20) + risk + "    strategies:" + entries)
    try:
        t.auto_trading = True
        engine = t.strategies
        assert engine is not None
        assert not engine.errors
        for name in SHIPPED:
            host = _host(t, name)
            assert host.cta.inited and host.cta.trading and host.running, (name, host.error)
        # the history came from the stored bars: DoubleMa's averages are computed
        dma = _host(t, "double_ma").cta
        assert dma.am.inited and dma.fast_ma0 > 0
        # the templates' own window bars close at session breaks (strategies/cta_host.py)
        multi = _host(t, "multi_tf").cta
        assert multi.bg5._in_sessions and multi.bg15._in_sessions

        # every template sees live sim ticks
        def last_tick(name: str) -> Any:  # each template's own BarGenerator keeps the last tick it got
            cta = _host(t, name).cta
            return (getattr(cta, "bg", None) or cta.bg5).last_tick

        seen = {name: last_tick(name) for name in SHIPPED}
        await wait_until(lambda: all(last_tick(n) is not seen[n] for n in SHIPPED), what="ticks to all")
        # then bars above the live price: a fall, then a rise (a golden cross for DoubleMa, whose
        # buy at the bar's close is then marketable); feeding stops at its first order
        last = t.oms.ticks[RB].last_price
        base = now().replace(second=0, microsecond=0) + timedelta(minutes=1)
        closes = [last + 60 - i for i in range(30)] + [last + 30 + 4 * i for i in range(1, 20)]

        def dma_triggers() -> list[Any]:
            return [g for g in t.db.load_triggers() if g.instance == "double_ma"]  # type: ignore[union-attr]

        for minute, close in enumerate(closes):
            for name in SHIPPED:
                _host(t, name).cta.on_bar(_vn_bar(t, close, minute, base))
            await asyncio.sleep(0)  # the fills' callbacks, as the loop would run them between bars
            if dma_triggers():
                break
        assert dma_triggers(), "DoubleMa sent nothing"
        first = dma_triggers()[0]
        assert first.condition.startswith("DoubleMaStrategy.buy ") and first.condition.endswith(" x1")
        assert first.action == "buy" and first.result == "success", first.error
        order = t.oms.orders[first.order_id]
        assert order.reference == "double_ma" and order.offset is Offset.OPEN
        await wait_until(lambda: _host(t, "double_ma").cta.pos == 1, what="DoubleMa's fill booked to pos")
        assert _host(t, "double_ma").pos == 1
        for name in SHIPPED:
            host = _host(t, name)
            assert host.running and not host.error and host.cta.trading, (name, host.error)
        # its order is in the account's database with the instance's reference
        stored = {o.order_id: o for o in t.db.load_orders()}  # type: ignore[union-attr]
        assert stored[first.order_id].reference == "double_ma"
    finally:
        await _stop(t, task)


@pytest.fixture
def probe_dir(core_env: CoreEnv) -> Path:
    path = core_env.root / "cta"
    path.mkdir()
    (path / "probe.py").write_text(PROBE)
    return path


def _probe_account(account_id: str = "CT2", risk: str = "", max_position: int = 10) -> str:
    return (
        sim_account(account_id, RB, rate=20)
        + risk
        + "    strategies:"
        + _entry("probe", "Probe", setting="{fixed_size: 2}", max_position=max_position)
    )


@pytest.fixture
async def probe(core_env: CoreEnv, probe_dir: Path) -> AsyncIterator[Trader]:
    _seed_bars(core_env, "CT2", RB, 300)
    t, task = await _start(core_env, _probe_account(), extra=f"strategy_path: {probe_dir}")
    t.auto_trading = True
    try:
        yield t
    finally:
        await _stop(t, task)


async def test_a_template_in_strategy_path_is_inited_from_the_stored_bars(probe: Trader) -> None:
    host = _host(probe, "probe")
    cta = host.cta
    assert cta.fixed_size == 2  # the setting, by name
    assert host.params == {"fixed_size": 2}
    assert cta.inited and cta.trading
    assert 100 <= cta.bars <= 300  # load_bar(2): the stored bars of the last two days
    await wait_until(lambda: cta.ticks > 0, what="ticks delivered")
    assert cta.get_pricetick() == 1 and cta.get_size() == 10
    assert probe.strategies is not None and probe.strategies.states()[0].class_name == "Probe"


async def test_callbacks_come_after_the_event_never_inside_the_templates_own_call(
    probe: Trader, caplog: pytest.LogCaptureFixture
) -> None:
    """The sim fills a marketable order inside ``send_order``; the template hears of it only
    after its ``on_tick`` returned (as from vnpy's event queue), with ``pos`` already updated."""
    cta = _host(probe, "probe").cta
    cta.buy_on_tick = True
    await wait_until(lambda: cta.trades, what="the fill")
    (order_id,) = cta.sent
    assert cta.trades == [(order_id, "OPEN", 1)]
    assert cta.trade_inside_tick is False
    assert probe.oms.orders[order_id].reference == "probe"
    # filled before buy() returned: not left among the orders cancel_all would cancel
    cta.cancel_all()
    assert not [r for r in caplog.records if "cancel" in r.getMessage()]


async def test_a_stopped_template_keeps_its_bars_going_and_sends_nothing(probe: Trader) -> None:
    host = _host(probe, "probe")
    cta = host.cta
    assert probe.strategies is not None and probe.strategies.stop("probe").ok
    assert not host.running and not cta.trading and cta.inited
    seen = cta.ticks
    await wait_until(lambda: cta.ticks > seen, what="ticks while stopped (vnpy feeds inited templates)")
    assert cta.buy(probe.oms.ticks[RB].ask_price_1, 1) == []  # not trading: the template itself refuses
    assert not probe.db.load_triggers()  # type: ignore[union-attr]  # nothing was even asked


async def test_a_raising_template_is_stopped_and_starts_again_after_a_new_init(probe: Trader) -> None:
    host = _host(probe, "probe")
    cta = host.cta
    cta.boom = True
    await wait_until(lambda: not host.running, what="the instance stopped")
    assert host.error == "on_tick: RuntimeError: template bug"
    assert not cta.trading and not cta.inited  # as vnpy's call_strategy_func leaves it
    assert cta.buy(probe.oms.ticks[RB].ask_price_1, 1) == []  # not trading: nothing goes out
    cta.boom = False
    cta.bars = 0
    assert probe.strategies is not None
    reply = probe.strategies.start("probe")
    assert reply.ok, reply.error
    assert cta.inited and cta.trading and host.running and not host.error
    assert cta.bars > 0  # on_init ran again: load_bar replayed the stored bars


async def test_a_stop_order_triggers_when_crossed_and_sends_a_limit_order(probe: Trader) -> None:
    cta = _host(probe, "probe").cta
    last = probe.oms.ticks[RB].last_price
    (far,) = cta.buy(last + 500, 1, stop=True)  # never reached
    (near,) = cta.buy(last - 50, 1, stop=True)  # crossed at the next tick
    assert far.startswith("STOP.") and near.startswith("STOP.")
    assert cta.stops[:2] == [(far, "WAITING", []), (near, "WAITING", [])]
    assert not probe.oms.orders  # held in the host, nothing at the venue yet
    await wait_until(lambda: any(s[0] == near and s[1] == "TRIGGERED" for s in cta.stops), what="triggered")
    (_, _, order_ids) = next(s for s in cta.stops if s[0] == near and s[1] == "TRIGGERED")
    (order_id,) = order_ids
    order = probe.oms.orders[order_id]
    assert order.direction is Direction.LONG and order.offset is Offset.OPEN and order.reference == "probe"
    tick = probe.oms.ticks[RB]
    assert order.price == (tick.limit_up or tick.ask_price_5)  # vnpy's price for a triggered stop
    trigger = next(g for g in probe.db.load_triggers() if g.order_id == order_id)  # type: ignore[union-attr]
    assert trigger.condition.startswith(f"Probe.buy stop {last - 50:.0f} x1: last ")
    await wait_until(lambda: cta.pos == 1, what="the stop's fill")
    assert cta.trades[-1][0] == order_id
    # the far one still waits; cancelling it reports CANCELLED and it never triggers
    assert far in _host(probe, "probe").stop_orders
    cta.cancel_order(far)
    assert cta.stops[-1] == (far, "CANCELLED", [])
    assert far not in _host(probe, "probe").stop_orders


async def test_a_stop_cancelled_when_another_triggers_on_the_same_tick_is_never_sent(probe: Trader) -> None:
    """Two stops crossed by one tick, the template cancelling the other when one triggers (one
    cancels other): the cancelled one sends nothing, though both were crossed."""
    cta = _host(probe, "probe").cta
    last = probe.oms.ticks[RB].last_price
    first, second = cta.buy(last - 50, 1, stop=True)[0], cta.buy(last - 60, 1, stop=True)[0]
    cta.oco = (first, second)
    await wait_until(lambda: any(s[1] == "TRIGGERED" for s in cta.stops), what="one triggered")
    await wait_until(lambda: cta.pos == 1, what="its fill")
    triggered = [s for s in cta.stops if s[1] == "TRIGGERED"]
    assert len(triggered) == 1, cta.stops
    other = second if triggered[0][0] == first else first
    assert (other, "CANCELLED", []) in cta.stops
    sent = [o for o in probe.oms.orders.values() if o.reference == "probe"]
    assert [o.order_id for o in sent] == triggered[0][2], "only the triggered stop's order went out"
    assert not _host(probe, "probe").stop_orders


async def test_a_refused_order_comes_back_rejected_with_the_rule(core_env: CoreEnv, probe_dir: Path) -> None:
    _seed_bars(core_env, "CT3", RB, 200)
    risk = "    risk: {max_order_volume: 2}\n"
    t, task = await _start(core_env, _probe_account("CT3", risk=risk), extra=f"strategy_path: {probe_dir}")
    try:
        t.auto_trading = True
        cta = _host(t, "probe").cta
        ask = t.oms.ticks[RB].ask_price_1
        assert cta.buy(ask, 3) == []  # nothing went out
        await wait_until(lambda: cta.orders, what="on_order of the refusal")
        order_id, status, _ = cta.orders[-1]
        assert status == "REJECTED"
        assert t.oms.orders[order_id].status is Status.REJECTED
        assert "max_order_volume" in t.oms.orders[order_id].status_msg
        (trigger,) = t.db.load_triggers()  # type: ignore[union-attr]
        assert trigger.condition == f"Probe.buy {ask:.0f} x3"
        assert trigger.result == "rejected" and "max_order_volume" in trigger.error
        # the instance's own max_position holds too (opens beyond it are refused before any venue)
        t.risk.config.max_order_volume = 100
        assert cta.buy(ask, 11) == []
        assert t.db.load_triggers()[-1].error.startswith("max_position")  # type: ignore[union-attr]
        # an order vnpy could not send either: nothing recorded, a log line says why
        from vnpy.trader.constant import Direction as VnDirection
        from vnpy.trader.constant import Offset as VnOffset

        before = len(t.db.load_triggers())  # type: ignore[union-attr]
        assert cta.send_order(VnDirection.NET, VnOffset.OPEN, ask, 1) == []
        assert cta.buy(float("nan"), 1) == []
        assert len(t.db.load_triggers()) == before  # type: ignore[union-attr]
        # auto-trading off: recorded, not executed
        t.auto_trading = False
        assert cta.short(t.oms.ticks[RB].bid_price_1, 1) == []
        last = t.db.load_triggers()[-1]  # type: ignore[union-attr]
        assert last.result == "not executed" and last.action == "sell"
    finally:
        await _stop(t, task)


async def test_sync_data_variables_survive_a_restart(core_env: CoreEnv, probe_dir: Path) -> None:
    _seed_bars(core_env, "CT2", RB, 200)
    extra = f"strategy_path: {probe_dir}"
    t, task = await _start(core_env, _probe_account(), extra=extra)
    try:
        cta = _host(t, "probe").cta
        assert cta.counter == -1
        cta.counter = 7
        cta.sync_data()
    finally:
        await _stop(t, task)
    saved = json.loads((t.state_dir / "strategies.json").read_text())
    assert saved["probe"]["variables"] == {"pos": 0, "counter": 7}  # vnpy's cta_strategy_data shape
    t, task = await _start(core_env, _probe_account(), extra=extra)
    try:
        cta = _host(t, "probe").cta
        assert cta.counter == 7  # restored after on_init (which set -1), as vnpy does
        assert cta.inited and cta.trading
    finally:
        await _stop(t, task)


async def test_sell_on_shfe_is_the_close_split(
    core_env: CoreEnv, probe_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[OrderRequest] = []
    real_send = SimGateway.send_order

    def recording_send(self: SimGateway, req: OrderRequest) -> str:
        sent.append(req)
        return real_send(self, req)

    monkeypatch.setattr(SimGateway, "send_order", recording_send)
    _seed_bars(core_env, "CT2", RB, 200)
    t, task = await _start(core_env, _probe_account(), extra=f"strategy_path: {probe_dir}")
    try:
        t.auto_trading = True
        # a long position as the venue reports it: 3 lots from yesterday, 2 opened today
        t.oms.update_position(
            Position(
                account_id="CT2", vt_symbol=RB, direction=Direction.LONG, volume=5, yd_volume=3, price=1.0
            )
        )
        cta = _host(t, "probe").cta
        bid = t.oms.ticks[RB].bid_price_1
        ids = cta.sell(bid, 5)
        assert [(r.offset, r.volume, r.reference) for r in sent] == [
            (Offset.CLOSEYESTERDAY, 3, "probe"),
            (Offset.CLOSETODAY, 2, "probe"),
        ]
        trigger = t.db.load_triggers()[-1]  # type: ignore[union-attr]
        assert trigger.condition == f"Probe.sell {bid:.0f} x5" and trigger.action == "close"
        legs = trigger.order_id.split(",")
        assert [t.oms.orders[i].offset for i in legs] == [Offset.CLOSEYESTERDAY, Offset.CLOSETODAY]
        # the sim's own book has no such lots: it refuses both, so none went out, and the
        # template hears of both legs as orders of its own
        assert ids == [i for i in legs if t.oms.orders[i].status is not Status.REJECTED]
        await wait_until(lambda: {o[0] for o in cta.orders} >= set(legs), what="on_order of both legs")
    finally:
        await _stop(t, task)


def test_a_template_class_is_checked_by_its_parameter_names() -> None:
    cls = load_strategy_class("vnpy_ctastrategy.strategies.double_ma_strategy:DoubleMaStrategy")
    assert issubclass(cls, CtaHost) and cls.class_name == "DoubleMaStrategy"
    cls.check_params("dma", {"fast_window": 5, "slow_window": 30})
    with pytest.raises(StrategyError, match="unknown parameter 'fast'") as info:
        cls.check_params("dma", {"fast": 5})
    assert info.value.param == "fast"
    with pytest.raises(StrategyError, match="parameter 'fast_window' must be an integer") as info:
        cls.check_params("dma", {"fast_window": "five"})
    assert info.value.param == "fast_window"
    with pytest.raises(StrategyError, match="has no 'Nope'"):
        load_strategy_class("vnpy_ctastrategy.strategies.double_ma_strategy:Nope")
    with pytest.raises(StrategyError, match="failed to import"):
        load_strategy_class("vnpy_ctastrategy.no_such_module:X")


def test_a_template_in_a_strategy_directory_is_found_and_an_unfinished_one_refused(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "half.py").write_text(
        "from vnpy_ctastrategy import CtaTemplate\n\nclass Half(CtaTemplate):\n    parameters = []\n"
    )
    cls = load_strategy_class("Probe", str(tmp_path))
    assert issubclass(cls, CtaHost) and cls.class_name == "Probe"
    assert list(cls.parameters) == ["fixed_size"] and cls.parameters["fixed_size"].kind is int
    with pytest.raises(StrategyError, match=r"'Half' in .*half\.py does not implement on_init"):
        load_strategy_class("Half", str(tmp_path))


async def test_the_demo_runs_vnpy_double_ma_and_the_console_sees_its_trigger_and_order(
    core_env: CoreEnv,
) -> None:
    """The demo's DQ1 runs DoubleMaStrategy on cu2708.SHFE. With stored history whose last
    bars put the 10-bar average just under the 20-bar one, the first live bar crosses it up:
    its buy is a trigger and an order in the manager's picture of DQ1 (what the console shows)."""
    from config import demo_config_path, load_config_file
    from core.manager import TradingManager
    from gateways.sim_market import Market

    cu = "cu2708.SHFE"
    config = load_config_file(demo_config_path())
    (entry,) = [s for s in config.accounts[0].strategies if s.name == "cu_double_ma"]
    assert entry.symbol == cu and entry.params == {"fast_window": 10, "slow_window": 20}
    spec, contract = sim_contracts.get_product(cu), sim_contracts.get_contract(cu, "DQ1")
    assert spec is not None and contract is not None
    start = Market.opening(contract, spec.base_price, config.accounts[0].sim.seed).last * contract.pricetick
    tick = contract.pricetick
    low = start - 60 * tick  # the last 10 bars one tick under the 10 before: fast < slow by half a tick;
    levels = [low + tick] * 110 + [low] * 10  # a first live bar above low + 9 ticks crosses it up
    core_env.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    end = now().replace(second=0, microsecond=0)
    bars = [
        Bar(
            account_id="DQ1",
            vt_symbol=cu,
            interval="1m",
            datetime=end - timedelta(minutes=len(levels) - i),
            open_price=level,
            high_price=level,
            low_price=level,
            close_price=level,
            volume=1,
        )
        for i, level in enumerate(levels)
    ]
    with AccountDatabase(database_path(core_env.data_dir, "DQ1")) as db:
        db.save_bars(bars)
    mgr = TradingManager(
        config, config_path=demo_config_path(), data_dir=core_env.data_dir, sock_dir=core_env.sock_dir
    )
    await mgr.start()
    try:
        dq1 = mgr.state("DQ1")
        await wait_until(
            lambda: "cu_double_ma" in dq1.strategies and dq1.strategies["cu_double_ma"].running,
            timeout=60,
            what="cu_double_ma running",
        )
        assert dq1.strategies["cu_double_ma"].class_name == "DoubleMaStrategy"
        assert dq1.strategies["cu_double_ma"].params == {"fast_window": 10, "slow_window": 20}

        def buys() -> list[Any]:
            return [t for t in dq1.triggers if t.instance == "cu_double_ma"]

        await wait_until(buys, timeout=150, what="DoubleMa's first trigger (the next minute's bar)")
        first = buys()[0]
        assert first.condition.startswith("DoubleMaStrategy.buy ") and first.condition.endswith(" x1")
        assert first.result == "success", first.error
        await wait_until(lambda: first.order_id in dq1.orders, what="its order in the picture")
        assert dq1.orders[first.order_id].reference == "cu_double_ma"
    finally:
        await mgr.stop()


async def test_the_kill_switch_stops_the_template_and_its_orders_and_a_halt_sends_nothing(
    probe: Trader,
) -> None:
    from core.models import TradingState

    host = _host(probe, "probe")
    cta = host.cta
    bid = probe.oms.ticks[RB].bid_price_1
    (resting,) = cta.buy(bid - 20, 1)  # below the market: it rests
    (stop_id,) = cta.sell(bid - 100, 1, stop=True)
    assert probe.oms.orders[resting].is_active
    assert probe._on_kill_req(None).ok
    assert not host.running and not cta.trading
    assert (stop_id, "CANCELLED", []) in cta.stops  # on_stop's cancel_all, as vnpy's stop_strategy
    await wait_until(lambda: not probe.oms.orders[resting].is_active, what="the resting order cancelled")
    assert probe.oms.orders[resting].status is Status.CANCELLED
    # HALTED without the kill (a storage failure halts the account): a running template's call
    # is recorded, not executed
    probe._set_trading_state(TradingState.ACTIVE)
    assert probe.strategies is not None and probe.strategies.start("probe").ok
    probe._set_trading_state(TradingState.HALTED)
    assert cta.buy(probe.oms.ticks[RB].ask_price_1, 1) == []
    last = probe.db.load_triggers()[-1]  # type: ignore[union-attr]
    assert last.result == "not executed" and last.error == "account HALTED"
