"""``qtrader-tui --history`` and ``--trigger-stats`` against a real daemon that traded (issue 10,
point 5): exit codes, the CSV header, and figures checked against the sim exchange's own account
(its close P&L and commission) and against the fills themselves."""

from __future__ import annotations

import asyncio
import csv
import io

from config import paths as cfg_paths
from core.control import send_control
from core.models import Direction, Offset, OrderRequest, OrderType
from core.sessions import trading_day_of
from storage import AccountDatabase, database_path
from tests.conftest import CoreEnv, sim_account, wait_until_sync
from tests.test_daemon import CONNECTED, Daemon, _control
from tui.reports import CSV_HEADER

GRID = """    strategies:
      - name: ag_grid
        class: GridStrategy
        symbol: ag2612.SHFE
        params: {grid_step: 1, levels: 5, volume: 1}
        risk: {max_position: 5}
    auto_trading: true
"""
ACCOUNTS = (
    sim_account("H1", "rb2705.SHFE", seed=5, rate=0)
    + sim_account("H2", "ag2612.SHFE", seed=8, rate=20)
    + GRID
)


def _order(direction: Direction, offset: Offset, price: float, volume: float) -> OrderRequest:
    return OrderRequest(
        vt_symbol="rb2705.SHFE",
        direction=direction,
        offset=offset,
        type=OrderType.LIMIT,
        price=price,
        volume=volume,
    )


def _csv(text: str) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == CSV_HEADER
    return [dict(zip(CSV_HEADER, r, strict=True)) for r in rows[1:]]


def test_history_and_trigger_stats_print_real_figures_from_a_daemon(core_env: CoreEnv) -> None:
    config = core_env.write_config(ACCOUNTS)
    path = cfg_paths.control_socket_path(cfg_paths.socket_dir(config))
    none = _control(core_env, "--history", "H1")
    assert none.returncode == 1 and "no qtrader core" in none.stderr and "--no-ui" in none.stderr
    assert _control(core_env, "--trigger-stats", "H1").returncode == 1
    daemon = Daemon(core_env)
    try:
        daemon.wait_for_accounts(CONNECTED, ("H1", "H2"))
        daemon.wait_for_line("control socket")

        # H1: a frozen market (tick_rate 0, seeded: the same book every run): buy 3 through the
        # ask, sell 2 back through the bid
        db = AccountDatabase(database_path(core_env.data_dir, "H1"), readonly=True)
        history = _control(core_env, "--history", "H1")
        assert history.returncode == 0 and history.stdout.splitlines()[-1].startswith("total: 0 trades")
        buy = asyncio.run(send_control(path, "order_req", _order(Direction.LONG, Offset.OPEN, 3300, 3), "H1"))
        assert buy.ok, buy.error
        sell = asyncio.run(
            send_control(path, "order_req", _order(Direction.SHORT, Offset.CLOSETODAY, 2900, 2), "H1")
        )
        assert sell.ok, sell.error
        wait_until_sync(lambda: len(db.load_trades()) >= 2, 20, "H1's fills stored")
        fills = db.load_trades()
        opened = [t for t in fills if t.offset is Offset.OPEN]
        closed = [t for t in fills if t.offset is not Offset.OPEN]
        assert sum(t.volume for t in opened) == 3 and sum(t.volume for t in closed) == 2

        out = _control(core_env, "--history", "H1", "--csv")
        assert out.returncode == 0, out.stderr
        rows = _csv(out.stdout)
        assert [r["trade_id"] for r in rows] == [t.trade_id for t in fills]
        # close P&L by the fills: (sell - buy) x lots x 10 (rb's multiplier), first in first out
        buy_price = opened[0].price  # one price level of the frozen book fills 3 lots
        assert all(t.price == buy_price for t in opened)
        expected = sum((t.price - buy_price) * t.volume * 10 for t in closed)
        assert sum(float(r["close_pnl"]) for r in rows) == expected != 0
        fees = sum(t.commission for t in fills)
        assert abs(sum(float(r["commission"]) for r in rows) - fees) < 0.01

        # the sim exchange's own account agrees (its close P&L and commission of the day)
        def account_agrees() -> bool:
            snaps = db.load_account_snapshots(limit=1)
            return (
                bool(snaps)
                and abs(snaps[-1].close_pnl - expected) < 1e-6
                and abs(snaps[-1].commission - fees) < 0.01
            )

        wait_until_sync(account_agrees, 20, "the account's close P&L in a snapshot")

        # one line per trade, then the trading day, then the total
        text = _control(core_env, "--history", "H1", "--symbol", "rb2705.SHFE")
        lines = text.stdout.splitlines()
        day = trading_day_of(fills[0].datetime).isoformat()
        assert len(lines) == len(fills) + 2
        assert lines[-2].startswith(f"day {day}: {len(fills)} trades, volume 5, commission {fees:,.2f}")
        assert f"close P&L {expected:,.2f}" in lines[-1]
        # a range that ends before today's trading day: nothing; one that starts today: all
        assert _csv(_control(core_env, "--history", "H1", "--csv", "--to", "2020-01-03").stdout) == []
        assert len(_csv(_control(core_env, "--history", "H1", "--csv", "--from", day).stdout)) == len(fills)
        assert _csv(_control(core_env, "--history", "H1", "--csv", "--symbol", "au2612.SHFE").stdout) == []

        # refusals: readable, non-zero
        unknown = _control(core_env, "--history", "NOPE")
        assert unknown.returncode == 1 and "no account 'NOPE'" in unknown.stderr
        assert _control(core_env, "--trigger-stats", "NOPE").returncode == 1
        bad = _control(core_env, "--history", "H1", "--from", "2026-02-30")
        assert bad.returncode == 2 and "--from: '2026-02-30' is not a date" in bad.stderr
        backwards = _control(core_env, "--history", "H1", "--from", "2026-12-04", "--to", "2026-12-01")
        assert backwards.returncode == 2 and "after --to" in backwards.stderr

        # H2: the grid strategy trades by itself; its record once it has closed a round trip
        def closed_a_round_trip() -> bool:
            stats = _control(core_env, "--trigger-stats", "H2").stdout
            return "round trips 0," not in stats and "ag_grid:" in stats

        wait_until_sync(closed_a_round_trip, 60, "ag_grid's first round trip")
        db2 = AccountDatabase(database_path(core_env.data_dir, "H2"), readonly=True)
        line = _control(core_env, "--trigger-stats", "H2").stdout.strip()
        assert line.startswith("ag_grid: triggers ") and "executed " in line and "win rate " in line
        triggers = [t for t in db2.load_triggers(limit=100_000) if t.instance == "ag_grid"]
        total = int(line.split("triggers ")[1].split(" ")[0])
        assert total >= len(triggers)  # more may have come between the two reads
        executed = int(line.split("executed ")[1].split(";")[0])
        assert executed >= 1
        db.close()
        db2.close()
    finally:
        daemon.kill()
