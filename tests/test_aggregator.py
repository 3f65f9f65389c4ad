"""DataAggregator: versioned per-account state and change notifications."""

from __future__ import annotations

from core.aggregator import MAX_FINISHED_ORDERS, Change, DataAggregator
from core.models import (
    Account,
    Direction,
    GatewayStatus,
    Offset,
    Order,
    OrderType,
    Position,
    Status,
    Tick,
    TraderInfo,
    TraderStatus,
    now,
)
from core.protocol import Message, Snapshot


def _msg(msg_type: str, data: object) -> Message:
    return Message.new(type=msg_type, account_id="DQ1", data=data)


def _order(order_id: str, status: Status = Status.NOTTRADED) -> Order:
    return Order(
        account_id="DQ1",
        order_id=order_id,
        vt_symbol="au2612.SHFE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=OrderType.LIMIT,
        price=900,
        volume=1,
        status=status,
        datetime=now(),
    )


def _agg() -> tuple[DataAggregator, list[Change]]:
    agg = DataAggregator()
    agg.add_account("DQ1", "sim")
    agg.add_account("DQ2", "sim")
    changes: list[Change] = []
    agg.subscribe(changes.append)
    return agg, changes


def test_changes_carry_kind_and_key_and_bump_versions() -> None:
    agg, changes = _agg()
    state = agg.states["DQ1"]
    agg.apply("DQ1", _msg("tick", Tick(vt_symbol="au2612.SHFE", datetime=now(), last_price=900)))
    agg.apply("DQ1", _msg("order", _order("o1")))
    assert changes == [Change("DQ1", "tick", "au2612.SHFE"), Change("DQ1", "order", "o1")]
    assert state.versions["order"] == state.version > state.versions["tick"] > 0
    assert agg.states["DQ2"].version == 0  # another account is untouched


def test_flat_position_leaves_and_working_orders_are_derived() -> None:
    agg, _ = _agg()
    state = agg.states["DQ1"]
    pos = Position(account_id="DQ1", vt_symbol="au2612.SHFE", direction=Direction.LONG, volume=1)
    agg.apply("DQ1", _msg("position", pos))
    assert ("au2612.SHFE", Direction.LONG) in state.positions
    agg.apply(
        "DQ1", _msg("position", Position(account_id="DQ1", vt_symbol="au2612.SHFE", direction=Direction.LONG))
    )
    assert not state.positions
    agg.apply("DQ1", _msg("order", _order("o1")))
    agg.apply("DQ1", _msg("order", _order("o2", Status.ALLTRADED)))
    assert [o.order_id for o in state.working_orders] == ["o1"]


def test_finished_orders_are_trimmed_working_ones_never() -> None:
    agg, _ = _agg()
    state = agg.states["DQ1"]
    agg.apply("DQ1", _msg("order", _order("working")))
    for i in range(MAX_FINISHED_ORDERS * 3):
        agg.apply("DQ1", _msg("order", _order(f"done{i}", Status.CANCELLED)))
    assert "working" in state.orders
    assert len(state.orders) <= MAX_FINISHED_ORDERS * 2 + 1
    assert f"done{MAX_FINISHED_ORDERS * 3 - 1}" in state.orders


def test_snapshot_replaces_everything() -> None:
    agg, changes = _agg()
    state = agg.states["DQ1"]
    agg.apply("DQ1", _msg("order", _order("stale")))
    info = TraderInfo(account_id="DQ1", gateway="sim", pid=42, gateway_status=GatewayStatus.CONNECTED)
    snap = Snapshot(info=info, account=Account(account_id="DQ1", balance=5.0), orders=[_order("fresh")])
    agg.apply("DQ1", _msg("snapshot", snap))
    assert list(state.orders) == ["fresh"]
    assert state.account is not None and state.account.balance == 5.0
    assert changes[-1] == Change("DQ1", "snapshot")
    assert all(v == state.version for v in state.versions.values())


def test_unchanged_heartbeat_is_silent_and_a_bad_subscriber_harms_no_one() -> None:
    agg, changes = _agg()
    info = TraderInfo(account_id="DQ1", gateway="sim", pid=42)
    agg.apply("DQ1", _msg("heartbeat", info))
    n = len(changes)
    agg.apply("DQ1", _msg("heartbeat", TraderInfo(account_id="DQ1", gateway="sim", pid=42)))
    assert len(changes) == n

    def broken(_: Change) -> None:
        raise RuntimeError("subscriber bug")

    agg.subscribe(broken)
    agg.set_status("DQ1", TraderStatus.CONNECTED)
    assert changes[-1] == Change("DQ1", "status")
    unsubscribe = agg.subscribe(changes.append)
    unsubscribe()
    assert agg.apply("DQ1", _msg("register", info))
    assert not agg.apply("DQ1", _msg("order_req", None))  # not a state message
