"""Replay (issue 11, point 2): a sim account's market driven by a file, and the batch command.

- the sim gateway plays a bar file's quotes (open, low/high, high/low, close of each bar, at the
  file's times) into its contract's market, a tick file's ticks as they are, says when it ends
  and leaves that market at its last quote; the random walk goes on for the other contracts;
- a real trader process (through the manager) shows the replayed quotes and fills an order
  against the replayed book;
- a replay file that cannot be used is refused at startup, naming the line and the column,
  as every configuration refusal (exit 2);
- ``qtrader-tui --replay`` (subprocess): exit 0 and the JSON last line; exit 2 and one line for a
  bad class, file or setting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vnpy_ctastrategy import CtaTemplate
from vnpy_ctastrategy.base import EngineType

from config import ConfigError
from config.schema import SimSettings
from core.config_checks import check_startup
from core.manager import TradingManager
from core.models import CHINA_TZ, Direction, GatewayStatus, Offset, OrderRequest, Status, TraderStatus
from gateways.sim import SimGateway
from gateways.sim_replay import ReplayFileError, read_replay
from tests.conftest import CoreEnv, wait_until
from tests.test_sim_gateway import Clock, Recorder, wait_for

RB = "rb2605.SHFE"
AU = "au2612.SHFE"
HEADER = "symbol,exchange,datetime,open,high,low,close,volume,turnover,open_interest\n"
ROOT = Path(__file__).resolve().parent.parent


def bar_rows(n: int, start: float = 3600.0) -> list[tuple[datetime, float, float, float, float]]:
    """``n`` bars a minute apart, alternately up and down, on rb's 1-yuan grid."""
    t = datetime(2025, 6, 3, 9, 0)
    rows = []
    price = start
    for i in range(n):
        close = price + (7 if i % 2 == 0 else -4)
        high, low = max(price, close) + 2, min(price, close) - 3
        rows.append((t, price, high, low, close))
        price, t = close, t + timedelta(minutes=1)
    return rows


def write_bars(
    path: Path, rows: list[tuple[datetime, float, float, float, float]], symbol: str = "rb2605"
) -> Path:
    with path.open("w") as f:
        f.write(HEADER)
        for t, o, h, low, c in rows:
            f.write(f"{symbol},SHFE,{t:%Y-%m-%d %H:%M:%S},{o},{h},{low},{c},40,{c * 400},1000\n")
    return path


def expected_prices(rows: list[tuple[datetime, float, float, float, float]]) -> list[tuple[datetime, float]]:
    out = []
    for t, o, h, low, c in rows:
        t = t.replace(tzinfo=CHINA_TZ)
        first, second = (low, h) if c >= o else (h, low)
        for price, second_of in zip((o, first, second, c), (0, 15, 30, 45), strict=True):
            out.append((t + timedelta(seconds=second_of), price))
    return out


# ====================================================================== the sim gateway


async def test_a_bar_file_drives_its_contract_and_the_end_is_said(tmp_path: Path) -> None:
    rows = bar_rows(12)
    path = write_bars(tmp_path / "bars.csv", rows)
    rec = Recorder()
    settings_ = SimSettings(tick_rate=20, seed=3, replay=str(path), speed="max")
    gw = SimGateway("R1", settings_, rec, tmp_path / "state", clock=Clock())
    gw.subscribe(RB)
    gw.subscribe(AU)
    await gw.connect()
    try:
        await wait_for(lambda: gw.replay_ended)
        replayed = [(t.datetime, t.last_price) for t in rec.of("tick") if t.vt_symbol == RB]
        assert replayed[-len(expected_prices(rows)) :] == expected_prices(rows)
        assert all(t.datetime.year == 2025 for t in rec.of("tick") if t.vt_symbol == RB)  # the file's times
        ended = [m for level, m in rec.of("log") if level == "WARNING" and "ended" in m]
        assert ended and "2025-06-03 09:11:45" in ended[0] and RB in ended[0]
        # the book is one tick each side of the replayed price
        final = [t for t in rec.of("tick") if t.vt_symbol == RB][-1]
        assert (final.bid_price_1, final.last_price, final.ask_price_1) == (
            rows[-1][4] - 1,
            rows[-1][4],
            rows[-1][4] + 1,
        )
        # the random walk goes on for the other contract, and never for the replayed one
        count = len([t for t in rec.of("tick") if t.vt_symbol == RB])
        au_before = len([t for t in rec.of("tick") if t.vt_symbol == AU])
        await wait_for(lambda: len([t for t in rec.of("tick") if t.vt_symbol == AU]) > au_before + 3)
        assert len([t for t in rec.of("tick") if t.vt_symbol == RB]) == count
    finally:
        await gw.close()


async def test_a_restarted_trader_goes_on_where_the_replay_got_to(tmp_path: Path) -> None:
    rows = bar_rows(6)
    path = write_bars(tmp_path / "bars.csv", rows)
    expected = expected_prices(rows)

    async def run(speed: float) -> tuple[SimGateway, Recorder]:
        rec = Recorder()
        gw = SimGateway(
            "R1", SimSettings(tick_rate=0, replay=str(path), speed=speed), rec, tmp_path / "s", clock=Clock()
        )
        gw.subscribe(RB)
        await gw.connect()
        return gw, rec

    def replayed(rec: Recorder) -> list[tuple[datetime, float]]:
        return [(t.datetime, t.last_price) for t in rec.of("tick") if t.vt_symbol == RB]

    # a slow replay stopped after its first quote (the next is 15 s of the file away: 2 s at most)
    gw, rec = await run(1.0)
    assert replayed(rec) == expected[:1]
    await gw.close()
    # restarted, fast: that quote again at its own time, then the rest, never back in time
    gw, rec = await run(float("inf"))
    try:
        await wait_for(lambda: gw.replay_ended)
        assert replayed(rec) == expected
        assert any("going on after 2025-06-03 09:00:00" in m for _, m in rec.of("log"))
    finally:
        await gw.close()
    # restarted after its end: the last quote again, and the end said at once
    gw, rec = await run(float("inf"))
    try:
        await wait_for(lambda: gw.replay_ended)
        assert replayed(rec) == expected[-1:]
    finally:
        await gw.close()
    # a file changed since is played from its start
    write_bars(path, rows[:3])
    gw, rec = await run(float("inf"))
    try:
        await wait_for(lambda: gw.replay_ended)
        assert replayed(rec) == expected_prices(rows[:3])
    finally:
        await gw.close()


async def test_a_tick_file_is_played_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    t0 = datetime(2025, 6, 3, 21, 0, 0)
    lines = ["datetime,last_price,volume,bid_price_1,bid_volume_1,ask_price_1,ask_volume_1"]
    prices = [3600, 3602, 3601, 3605, 3599]
    for i, p in enumerate(prices):
        lines.append(
            f"{t0 + timedelta(seconds=i / 2):%Y-%m-%d %H:%M:%S.%f},{p},{10 * (i + 1)},{p - 1},5,{p + 2},7"
        )
    path.write_text("\n".join(lines) + "\n")
    rec = Recorder()
    gw = SimGateway(
        "R1",
        SimSettings(tick_rate=0, replay=str(path), replay_symbol=RB, speed=1000),
        rec,
        tmp_path / "s",
        clock=Clock(),
    )
    gw.subscribe(RB)
    await gw.connect()
    try:
        await wait_for(lambda: gw.replay_ended)
        ticks = [t for t in rec.of("tick") if t.vt_symbol == RB]
        assert [t.last_price for t in ticks][-5:] == prices
        assert (ticks[-1].bid_price_1, ticks[-1].ask_price_1, ticks[-1].ask_volume_1) == (3598, 3601, 7)
        assert ticks[-1].volume == 50
    finally:
        await gw.close()


async def test_a_file_gone_bad_since_the_start_leaves_the_account_disconnected_saying_why(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bars.csv"
    # a file the trader cannot use (edited after the entry point checked it, say): the trader
    # neither replays it nor falls back to a random walk for that contract
    path.write_text(HEADER + "rb2605,SHFE,2025-06-03 09:00:00,3600,3610,3590,,1,1,1\n")
    rec = Recorder()
    gw = SimGateway("R1", SimSettings(tick_rate=0, replay=str(path)), rec, tmp_path / "s", clock=Clock())
    gw.subscribe(RB)
    await gw.connect()
    try:
        status, message = rec.of("status")[-1]
        assert status is GatewayStatus.DISCONNECTED
        assert "line 2, column 'close'" in message and "empty" in message
        assert not [t for t in rec.of("tick") if t.vt_symbol == RB]
    finally:
        await gw.close()


async def test_a_trader_process_shows_the_replayed_quotes_and_fills_against_them(core_env: CoreEnv) -> None:
    rows = bar_rows(20)
    path = write_bars(core_env.root / "bars.csv", rows)
    config = core_env.write_config(
        f"""
  - account_id: RP1
    gateway: sim
    sim: {{initial_balance: 1000000, seed: 4, tick_rate: 5, replay: {path.name}, speed: max}}
    watchlist: [{RB}, {AU}]
"""
    )
    assert config.accounts[0].sim.replay == str(path)  # relative to the config file
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        state = mgr.state("RP1")
        end = rows[-1][0].replace(tzinfo=CHINA_TZ) + timedelta(seconds=45)
        close = rows[-1][4]
        await wait_until(
            lambda: (
                state.status is TraderStatus.CONNECTED
                and RB in state.ticks
                and state.ticks[RB].datetime == end
                and AU in state.ticks
            ),
            what="the replay's last quote in the manager's picture",
        )
        tick = state.ticks[RB]
        assert (tick.last_price, tick.bid_price_1, tick.ask_price_1) == (close, close - 1, close + 1)
        reply = await mgr.send_order(
            "RP1",
            OrderRequest(
                vt_symbol=RB, direction=Direction.LONG, offset=Offset.OPEN, price=close + 1, volume=1
            ),
        )
        assert reply.ok, reply.error
        order_id = reply.result["order_id"]
        await wait_until(
            lambda: order_id in state.orders and state.orders[order_id].status is Status.ALLTRADED,
            what="the order filled against the replayed book",
        )
        trades = [t for t in state.trades if t.order_id == order_id]
        assert [t.price for t in trades] == [close + 1]
    finally:
        await mgr.stop()


# ====================================================================== refusals at startup


def _account(sim: str) -> str:
    return f"""
  - account_id: RP1
    gateway: sim
    sim: {sim}
    watchlist: [{RB}]
"""


def _startup_error(core_env: CoreEnv, sim: str) -> str:
    from config import LoadedConfig

    config = core_env.write_config(_account(sim))
    loaded = LoadedConfig(config=config, source=core_env.config_path, is_demo=False)
    with pytest.raises(ConfigError) as info:
        check_startup(loaded)
    return str(info.value)


def test_a_missing_file_is_refused(core_env: CoreEnv) -> None:
    text = _startup_error(core_env, f"{{replay: {core_env.root / 'nope.csv'}, replay_symbol: {RB}}}")
    assert "accounts[0].sim.replay" in text and "nope.csv" in text and "cannot be read" in text


def test_a_malformed_file_is_refused_naming_line_and_column(core_env: CoreEnv) -> None:
    path = write_bars(core_env.root / "bars.csv", bar_rows(5))
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")
    cells[4] = "12x"  # the high of the third bar
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    text = _startup_error(core_env, f"{{replay: {path}}}")
    assert "line 4, column 'high'" in text and "'12x' is not a number" in text


def test_a_file_without_a_column_or_out_of_order_is_refused(core_env: CoreEnv) -> None:
    path = core_env.root / "bars.csv"
    path.write_text("datetime,open,high,low\n2025-06-03 09:00:00,1,2,1\n")
    text = _startup_error(core_env, f"{{replay: {path}, replay_symbol: {RB}}}")
    assert "line 1" in text and "missing column 'close'" in text
    rows = bar_rows(3)
    rows[2] = (rows[0][0], *rows[2][1:])
    write_bars(path, rows)
    text = _startup_error(core_env, f"{{replay: {path}}}")
    assert "line 4, column 'datetime'" in text and "before the line above" in text


def test_the_contract_must_be_known_and_said(core_env: CoreEnv) -> None:
    path = core_env.root / "bars.csv"
    write_bars(path, bar_rows(3), symbol="zz2605")
    assert "sim.replay_symbol" in _startup_error(core_env, f"{{replay: {path}}}")
    path.write_text("datetime,open,high,low,close\n2025-06-03 09:00:00,1,2,1,2\n")
    text = _startup_error(core_env, f"{{replay: {path}}}")
    assert "no symbol and exchange columns" in text and "replay_symbol" in text


def test_a_paper_account_cannot_replay(core_env: CoreEnv) -> None:
    from config import LoadedConfig

    path = write_bars(core_env.root / "bars.csv", bar_rows(3))
    config = core_env.write_config(
        _account("{}").replace("RP1", "SRC").replace(RB, AU)
        + f"""
  - account_id: P1
    gateway: sim
    market_data_from: SRC
    sim: {{replay: {path}}}
"""
    )
    with pytest.raises(ConfigError) as info:
        check_startup(LoadedConfig(config=config, source=core_env.config_path, is_demo=False))
    assert "accounts[1].sim.replay" in str(info.value) and "paper account" in str(info.value)


def test_an_expired_month_in_the_watchlist_is_fine_when_it_is_replayed(core_env: CoreEnv) -> None:
    from config import LoadedConfig

    path = write_bars(core_env.root / "bars.csv", bar_rows(3), symbol="rb2501")
    config = core_env.write_config(
        """
  - account_id: RP1
    gateway: sim
    sim: {replay: bars.csv}
    watchlist: [rb2501.SHFE]
"""
    )
    assert config.accounts[0].sim.replay == str(path)
    check_startup(LoadedConfig(config=config, source=core_env.config_path, is_demo=False))


def test_speed_and_replay_symbol_are_validated(core_env: CoreEnv) -> None:
    for sim, words in (
        ("{replay: x.csv, speed: 0}", "speed"),
        ("{replay: x.csv, speed: fast}", "speed"),
        (f"{{replay_symbol: {RB}}}", "only with replay"),
    ):
        with pytest.raises(ConfigError) as info:
            core_env.write_config(_account(sim))
        assert words in str(info.value), str(info.value)


def test_the_entry_point_refuses_a_bad_replay_file_with_exit_2(core_env: CoreEnv) -> None:
    path = core_env.root / "bars.csv"
    path.write_text(HEADER + "rb2605,SHFE,2025-06-03 09:00:00,3600,3590,3580,3585,1,1,1\n")
    core_env.write_config(_account(f"{{replay: {path}}}"))
    result = _cli("--config", str(core_env.config_path), "--no-ui", "--data-dir", str(core_env.data_dir))
    assert result.returncode == 2
    assert "line 2, column 'high'" in result.stderr and "below the bar's open" in result.stderr


# ====================================================================== the file reader


@settings(max_examples=60, deadline=None)
@given(
    bars=st.lists(
        st.tuples(st.integers(1, 10_000), st.integers(0, 50), st.integers(0, 50), st.integers(-50, 50)),
        min_size=1,
        max_size=30,
    ),
    broken=st.data(),
)
def test_what_is_written_is_read_back_and_any_broken_cell_is_named(tmp_path_factory, bars, broken) -> None:
    path = tmp_path_factory.mktemp("r") / "bars.csv"
    t = datetime(2025, 1, 2, 9, 0)
    rows = []
    for i, (o, up, down, move) in enumerate(bars):
        c = max(1, o + move)
        rows.append(
            (
                t + timedelta(minutes=i),
                float(o),
                float(max(o, c) + up),
                float(max(1, min(o, c) - down)),
                float(c),
            )
        )
    write_bars(path, rows)
    data = read_replay(path, RB)
    assert data.kind == "bars" and data.file_symbol == RB
    assert [
        (b.datetime.replace(tzinfo=None), b.open_price, b.high_price, b.low_price, b.close_price)
        for b in data.bars
    ] == rows
    line = broken.draw(st.integers(2, len(rows) + 1))
    column = broken.draw(st.sampled_from(["open", "high", "low", "close", "volume", "datetime"]))
    junk = broken.draw(st.sampled_from(["", "abc", "nan", "-5", "1e999"]))
    text = path.read_text().splitlines()
    cells = text[line - 1].split(",")
    cells[HEADER.strip().split(",").index(column)] = junk
    text[line - 1] = ",".join(cells)
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ReplayFileError) as info:
        read_replay(path, RB)
    assert info.value.line == line and info.value.column == column


# ====================================================================== the batch command


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


ATR_RSI = "vnpy_ctastrategy.strategies.atr_rsi_strategy:AtrRsiStrategy"


def test_replay_command_prints_the_trades_and_the_json_last_line(tmp_path: Path) -> None:
    from tests.test_replay_parity import make_bars, write_csv

    path = tmp_path / "bars.csv"
    write_csv(path, make_bars(3_000))
    result = _cli(
        "--replay",
        "--strategy",
        ATR_RSI,
        "--symbol",
        RB,
        "--bars",
        str(path),
        "--rate",
        "0.0001",
        "--slippage",
        "1",
    )
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["trade_count"] == len(last["trades"]) > 0
    when, direction, offset, price, volume = last["trades"][0]
    assert datetime.fromisoformat(when).year == 2026 and direction in ("LONG", "SHORT") and offset == "OPEN"
    assert price > 0 and volume == 1
    assert isinstance(last["net_pnl"], float)
    assert "daily P&L" in result.stdout and "summary" in result.stdout and "trades" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--strategy", "vnpy_ctastrategy.strategies.atr_rsi_strategy:Nope"], "has no 'Nope'"),
        (["--strategy", "strategies.ma_cross:MaCrossStrategy"], "not a vnpy CtaTemplate"),
        (["--strategy", "AtrRsiStrategy"], "package.module:ClassName"),
        (["--setting", "{not json"], "--setting is not JSON"),
        (["--setting", '{"atr_lenght": 3}'], "unknown parameter 'atr_lenght'"),
        (["--bars", "/nonexistent/bars.csv"], "cannot be read"),
        (["--bars", "BROKEN"], "line 2, column 'close'"),
        (["--symbol", "zz2605.SHFE"], "give --size and --pricetick"),
        (["--rate", "-1"], "--rate -1"),
    ],
)
def test_replay_command_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    good = write_bars(tmp_path / "bars.csv", bar_rows(5))
    broken = tmp_path / "broken.csv"
    broken.write_text(HEADER + "rb2605,SHFE,2025-06-03 09:00:00,3600,3610,3590,?,1,1,1\n")
    given_args = {"--strategy": ATR_RSI, "--symbol": RB, "--bars": str(good)}
    extra: list[str] = []
    for key, value in zip(args[::2], args[1::2], strict=True):
        if key in given_args:
            given_args[key] = str(broken) if value == "BROKEN" else value
        else:
            extra += [key, value]
    flat = [x for pair in given_args.items() for x in pair]
    result = _cli("--replay", *flat, *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert result.stdout == ""


class EngineTypeProbe(CtaTemplate):
    """Buys one lot a tick under the close when flat; says which engine it was told it runs in."""

    parameters: list[str] = []
    variables: list[str] = []

    def on_init(self) -> None:
        self.seen = self.get_engine_type()

    def on_bar(self, bar: Any) -> None:
        if self.pos == 0:
            self.buy(bar.close_price - 1, 1)


def test_a_template_in_a_replay_is_told_it_is_backtesting(tmp_path: Path) -> None:
    from core.replay import prepare, run

    rows = bar_rows(4)
    replay = run(prepare("tests.test_replay:EngineTypeProbe", RB, write_bars(tmp_path / "bars.csv", rows)))
    assert replay.host.cta.seen is EngineType.BACKTESTING
    # the first bar's buy at its close - 1 rests and fills on the next bar, at the better of price and open
    first = replay.trades[0]
    assert first.datetime.replace(tzinfo=None) == rows[1][0]
    assert first.price == min(rows[0][4] - 1, rows[1][1])


def test_a_price_beyond_any_futures_price_is_refused_by_line_and_column(tmp_path: Path) -> None:
    """1e300 is finite but no price (its turnover overflows to inf, and --replay's JSON line
    would carry Infinity): prices are held to the wire's bound, MAX_PRICE."""
    from core.models import MAX_PRICE

    rows = bar_rows(4)
    t, o, _h, low, c = rows[2]
    rows[2] = (t, o, 1e300, low, c)
    path = write_bars(tmp_path / "bars.csv", rows)
    with pytest.raises(ReplayFileError) as info:
        read_replay(path, RB)
    assert (info.value.line, info.value.column) == (4, "high") and f"{MAX_PRICE:g}" in str(info.value)
    ticks = tmp_path / "ticks.csv"
    ticks.write_text(
        "datetime,last_price,ask_price_1\n2025-06-03 09:00:00,3600,3601\n2025-06-03 09:00:01,3600,2e9\n"
    )
    with pytest.raises(ReplayFileError) as info:
        read_replay(ticks, RB)
    assert (info.value.line, info.value.column) == (3, "ask_price_1")


def test_bars_less_than_a_minute_apart_are_refused(tmp_path: Path) -> None:
    """A bar is played as four quotes over its minute (:00, :15, :30, :45): bars closer than a
    minute (a file of 10-second bars, a stray row) would play quotes back in time."""
    rows = bar_rows(3)
    _t, o, h, low, c = rows[2]
    rows[2] = (rows[1][0] + timedelta(seconds=10), o, h, low, c)
    path = write_bars(tmp_path / "bars.csv", rows)
    with pytest.raises(ReplayFileError) as info:
        read_replay(path, RB)
    assert (info.value.line, info.value.column) == (4, "datetime") and "a minute" in str(info.value)
