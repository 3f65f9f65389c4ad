"""Trading sessions through real trader processes: an order on a closed sim market
(``sim.sessions: true``, the exchange clock set by ``sim.clock_start``) is refused by the trader's
risk rule with the next open time and kept as a REJECTED order; an open market trades; without
``sim.sessions`` the sim trades at any hour."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import datetime

from core.manager import TradingManager
from core.models import CHINA_TZ, Direction, Offset, OrderRequest, OrderType, Status, TraderStatus, now
from tests.conftest import CoreEnv, wait_until

RB = "rb2705.SHFE"


def _account(account_id: str, clock_start: str, sessions: bool) -> str:
    return f"""
  - account_id: {account_id}
    gateway: sim
    sim: {{initial_balance: 1000000, seed: 4, tick_rate: 20, sessions: {str(sessions).lower()},
          clock_start: "{clock_start}"}}
    watchlist: [{RB}]
"""


def _buy(mgr: TradingManager, account_id: str) -> OrderRequest:
    tick = mgr.state(account_id).ticks[RB]
    return OrderRequest(
        vt_symbol=RB,
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=OrderType.LIMIT,
        price=tick.limit_up,
        volume=1,
    )


async def test_an_order_on_a_closed_sim_market_is_refused_with_the_next_open_time(core_env: CoreEnv) -> None:
    config = core_env.write_config(
        _account("SAT", "2026-12-05T03:00:00+08:00", sessions=True)  # Saturday small hours: closed
        + _account("FRI", "2026-12-04T09:30:00+08:00", sessions=True)  # Friday morning: open
        + _account("ANY", "2026-12-05T03:00:00+08:00", sessions=False)  # the demo: any hour
    )
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        accounts = ("SAT", "FRI", "ANY")
        await wait_until(
            lambda: all(
                mgr.state(a).status is TraderStatus.CONNECTED and RB in mgr.state(a).ticks for a in accounts
            ),
            what="three sim traders connected with a quote",
        )
        sat, fri = mgr.state("SAT"), mgr.state("FRI")
        # the trader says how far its venue's clock is ahead, for the console's State column
        assert sat.info is not None
        ahead = (datetime(2026, 12, 5, 3, tzinfo=CHINA_TZ) - now()).total_seconds()
        assert ahead - 60 < sat.info.clock_offset <= ahead + 1  # whole seconds
        quiet = sat.ticks[RB]

        reply = await mgr.send_order("SAT", _buy(mgr, "SAT"))
        assert not reply.ok
        assert reply.error == "market closed: rb2705.SHFE opens Mon 2026-12-07 09:00 CST"
        refused = reply.result["order_id"]
        assert refused.startswith("LOCAL.")
        await wait_until(lambda: refused in sat.orders, what="the refusal on record")
        assert sat.orders[refused].status is Status.REJECTED
        assert sat.orders[refused].status_msg == reply.error

        reply = await mgr.send_order("FRI", _buy(mgr, "FRI"))
        assert reply.ok, reply.error
        filled = reply.result["order_id"]
        await wait_until(
            lambda: filled in fri.orders and fri.orders[filled].status is Status.ALLTRADED,
            what="the open market fills",
        )

        reply = await mgr.send_order("ANY", _buy(mgr, "ANY"))
        assert reply.ok, reply.error  # sim.sessions off: no session rule

        # the open market ticks on; the closed one sent nothing since its first quote
        first = fri.ticks[RB].datetime
        await wait_until(lambda: fri.ticks[RB].datetime > first, what="ticks from the open market")
        await wait_until(
            lambda: mgr.state("ANY").ticks[RB].datetime > quiet.datetime, what="ticks at any hour"
        )
        now_quiet = sat.ticks[RB]
        assert (now_quiet.datetime, now_quiet.last_price, now_quiet.volume) == (
            quiet.datetime,
            quiet.last_price,
            quiet.volume,
        )
        assert not sat.trades and not sat.positions
    finally:
        await mgr.stop()


SCRIPTED = textwrap.dedent(
    """
    from strategies.base import Strategy


    class BuyOnce(Strategy):
        def bars_needed(self) -> int:
            return 0

        def on_tick(self, tick) -> None:
            super().on_tick(tick)
            if self.running and not getattr(self, "asked", False):
                self.asked = True
                self.buy(tick.limit_up, 1, "first tick")
    """
)


async def test_strategies_read_the_venues_clock(core_env: CoreEnv) -> None:
    """A sim whose clock is a day behind (``sim.clock_start``): its ticks are dated by that clock,
    and a signal taken on one is fresh by the same clock, so it is executed, not dropped as stale."""
    from config import load_config_file
    from core.trader import Trader

    strategy_dir = core_env.root / "user_strategies"
    strategy_dir.mkdir()
    (strategy_dir / "buy_once.py").write_text(SCRIPTED)
    account = _account("BEHIND", "2026-12-03T10:00:00+08:00", sessions=True)  # Thursday, rb open
    account += (
        "    auto_trading: true\n    strategies:\n      - {name: b1, class: BuyOnce, symbol: rb2705.SHFE}\n"
    )
    core_env.write_config(account, extra=f"strategy_path: {strategy_dir}")
    config = load_config_file(core_env.config_path)
    trader = Trader(config.accounts[0], config, data_dir=core_env.data_dir, socket_path=None)
    task = asyncio.create_task(trader.run())
    try:
        await wait_until(
            lambda: (p := trader.oms.position(RB, Direction.LONG)) is not None and p.volume == 1,
            what="the strategy's buy executed and filled",
        )
        assert trader.gateway is not None and trader.strategies is not None
        assert abs((trader.strategies.clock() - trader.gateway.now()).total_seconds()) < 5
        assert (now() - trader.gateway.now()).total_seconds() > 3600  # the venue is behind
    finally:
        trader.stop()
        await task
