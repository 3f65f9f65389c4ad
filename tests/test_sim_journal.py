"""The sim's files on disk stay readable: a snapshot and journal written by an earlier version load.

``tests/data/sim_state_v1/`` was written by the sim as it was before it was split into modules
(commit ec15709), through a ``SimGateway`` on a fixed clock: one trading day of an account (opens
on three exchanges), the roll into the next one, then a day's changes (a fill of today's lots,
resting close-yesterday / close-today / opening orders, a cancel, a FAK close, a FOK fill, a
rejected close) left in the journal as a killed trader leaves them, with no compaction at close.
``expected.json`` is the exchange's own snapshot taken in memory right after the last change.
Never regenerate these files with newer code: they stand for the files users already have.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import SimSettings
from core.models import CHINA_TZ, Direction, Offset, Order, Position
from gateways.sim import SimGateway
from gateways.sim_journal import decode_state, load_state

DATA = Path(__file__).parent / "data" / "sim_state_v1"
AU, TA, IRON = "au2612.SHFE", "TA605.CZCE", "i2605.DCE"
LONG, SHORT = Direction.LONG, Direction.SHORT


class Listener:
    """Keeps what a gateway reports, by kind."""

    def __init__(self) -> None:
        self.events: dict[str, list[Any]] = {}

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("on_"):
            raise AttributeError(name)
        return lambda *args: self.events.setdefault(name[3:], []).append(args[0] if len(args) == 1 else args)


def test_an_earlier_snapshot_and_journal_replay_to_the_state_the_exchange_had() -> None:
    state, note = load_state(DATA / "sim_exchange.json")
    assert note == "" and state is not None
    expected = decode_state((DATA / "expected.json").read_bytes())
    # saved_at is the snapshot's own moment, not part of the account
    assert msgspec.structs.replace(state, saved_at=None) == msgspec.structs.replace(expected, saved_at=None)


async def test_the_gateway_continues_an_account_saved_by_an_earlier_version(tmp_path: Path) -> None:
    for name in ("sim_exchange.json", "sim_exchange.json.journal"):
        shutil.copy(DATA / name, tmp_path / name)
    listener = Listener()
    settings = SimSettings(initial_balance=1.0, seed=5, tick_rate=0)  # the balance comes from the file
    clock = lambda: datetime(2026, 11, 18, 21, 10, tzinfo=CHINA_TZ)  # noqa: E731 - same trading day
    gw = SimGateway("DQ1", settings, listener, tmp_path, clock=clock)
    await gw.connect()
    assert [level for level, _ in listener.events["log"]] == ["INFO"]  # loaded, nothing skipped
    account = listener.events["account"][-1]
    assert account.trading_day == "20261119"
    assert account.pre_balance == pytest.approx(2_999_192.88)
    assert account.close_pnl == pytest.approx(-50.0)
    assert account.commission == pytest.approx(20.755)
    assert account.frozen == pytest.approx(1863.0)
    positions: dict[tuple[str, Direction], Position] = {
        (p.vt_symbol, p.direction): p for p in listener.events["position"]
    }
    au = positions[(AU, LONG)]
    assert (au.volume, au.yd_volume, au.frozen, au.yd_frozen, au.price) == (4, 3, 3, 2, 958.1)
    assert (positions[(TA, SHORT)].volume, positions[(TA, SHORT)].yd_volume) == (2, 2)
    assert (positions[(IRON, LONG)].volume, positions[(IRON, LONG)].yd_volume) == (3, 3)
    assert (positions[(TA, LONG)].volume, positions[(TA, LONG)].yd_volume) == (1, 0)
    working: list[Order] = [o for o in listener.events["order"] if o.is_active]
    assert sorted((o.vt_symbol, o.offset, o.volume) for o in working) == [
        (TA, Offset.OPEN, 1),
        (AU, Offset.CLOSETODAY, 1),
        (AU, Offset.CLOSEYESTERDAY, 2),
    ]
    assert len(listener.events["trade"]) == 3
    await gw.close()  # compacts: the same account, now in one snapshot of the current format
    state, note = load_state(tmp_path / "sim_exchange.json")
    assert note == "" and state is not None
    expected = decode_state((DATA / "expected.json").read_bytes())
    assert (state.positions, state.working_orders, state.trades) == (
        expected.positions,
        expected.working_orders,
        expected.trades,
    )
