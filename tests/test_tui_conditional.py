"""The console's conditional orders, reverse and close-a-contract, driven like an operator
(Pilot over a real TradingManager and embedded sim traders, as tests/test_tui_flows.py)."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select, TabbedContent

from core.models import ConditionalRequest, CondKind, CondState, Direction, Offset, OrderRequest, TriggerOp
from tests.test_tui_flows import Console, confirm_rows, console, focus_panel, select_row
from tui.dialogs.conditional import ConditionalDialog
from tui.dialogs.confirm import ConfirmDialog

SYMBOL = "rb2705.SHFE"


@pytest.fixture(autouse=True)
def confirm_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ConfirmDialog, "ARM_DELAY", 0.0)
    monkeypatch.setattr(ConfirmDialog, "REPEAT_GAP", 0.0)


async def _position(c: Console, direction: Direction, volume: int, symbol: str = SYMBOL) -> None:
    state = c.state("DQ1")
    tick = state.ticks[symbol]
    price = tick.limit_up if direction is Direction.LONG else tick.limit_down
    req = OrderRequest(vt_symbol=symbol, direction=direction, offset=Offset.OPEN, price=price, volume=volume)
    assert (await c.manager.send_order("DQ1", req)).ok
    await c.until(lambda: (symbol, direction) in state.positions, f"{direction.name} {symbol}")


async def _conditional_tab(c: Console) -> None:
    c.screen.query_one("#lower", TabbedContent).active = "tab-conditional"
    await c.pilot.pause()
    await focus_panel(c, "conditional")


async def test_a_stop_loss_on_the_selected_position_is_confirmed_held_shown_and_cancelled(core_env) -> None:  # type: ignore[no-untyped-def]
    async with console(core_env) as c:
        state = c.state("DQ1")
        await _position(c, Direction.LONG, 2)
        await select_row(c, "positions", f"{SYMBOL}|LONG")
        await c.pilot.press("w")
        dialog = c.dialog(ConditionalDialog)
        # prefilled as the stop-loss that closes the position
        assert dialog.query_one("#cond-kind", Select).value == CondKind.STOP_LOSS.name
        assert dialog.query_one("#cond-direction", Select).value == Direction.SHORT.name
        assert dialog.query_one("#cond-offset", Select).value == Offset.CLOSE.name
        assert dialog.query_one("#cond-op", Select).value == TriggerOp.LE.name
        assert dialog.query_one("#cond-volume", Input).value == "2"
        trailing = dialog.query_one("#cond-trailing", Input)
        trailing.value = "10"
        trigger = float(dialog.query_one("#cond-trigger", Input).value)
        assert trigger < state.ticks[SYMBOL].last_price
        await c.pilot.press("enter")
        confirm = c.dialog(ConfirmDialog)
        rows = confirm_rows(confirm)
        assert rows["When"].startswith(f"last <= {trigger:g}")
        assert rows["Then send"] == "SELL CLOSE 2 @ bid"
        assert "Trailing" in rows and "fires at most once" in rows["Held by"]
        assert not state.conditionals  # nothing before the yes
        await c.pilot.press("y")
        await c.until(lambda: len(state.conditionals) == 1, "the trader holds it")
        (cond,) = state.conditionals.values()
        assert cond.state is CondState.PENDING and cond.kind is CondKind.STOP_LOSS and cond.trailing == 10
        await c.notified("conditional rb2705.SHFE: accepted")

        await _conditional_tab(c)
        await c.until(lambda: c.rows("conditional") == [cond.cond_id], "the Conditional panel shows it")
        words = c.screen.query_one("#conditional").get_cell(cond.cond_id, "what")  # type: ignore[attr-defined]
        assert words == f"last <= {trigger:g} → SELL CLOSE 2 @ bid (stop-loss, trailing 10)"
        await c.pilot.press("x")
        await c.until(lambda: state.conditionals[cond.cond_id].state is CondState.CANCELLED, "cancelled")
        await c.pilot.press("x")  # a finished one: nothing to cancel, said so
        await c.notified("is CANCELLED: nothing to cancel")


async def test_an_invalid_form_is_explained_and_arms_nothing(core_env) -> None:  # type: ignore[no-untyped-def]
    async with console(core_env) as c:
        await select_row(c, "market", SYMBOL)
        await c.pilot.press("w")
        dialog = c.dialog(ConditionalDialog)
        assert dialog.query_one("#cond-kind", Select).value == CondKind.ENTRY.name
        dialog.query_one("#cond-trigger", Input).value = "3650.5"
        await c.pilot.press("enter")
        assert "tick grid" in str(dialog.query_one("#cond-error").render())
        dialog.query_one("#cond-trigger", Input).value = "abc"
        await c.pilot.press("enter")
        assert "Trigger: enter a price" in str(dialog.query_one("#cond-error").render())
        await c.pilot.press("escape")
        c.no_dialog()
        assert not c.state("DQ1").conditionals


async def test_reverse_lists_the_close_and_the_open_then_flips_the_position(core_env) -> None:  # type: ignore[no-untyped-def]
    async with console(core_env) as c:
        state = c.state("DQ1")
        await _position(c, Direction.LONG, 2)
        await select_row(c, "positions", f"{SYMBOL}|LONG")
        await c.pilot.press("v")
        confirm = c.dialog(ConfirmDialog)
        rows = confirm_rows(confirm)
        assert rows["1. close: Side"] == "SELL" and rows["1. close: Offset"] == "CLOSETODAY 2"
        assert rows["2. then open"] == f"SELL OPEN 2 {SYMBOL} at the opposite best"
        assert "NOT sent" in rows["When"]
        await c.pilot.press("y")
        await c.until(
            lambda: (
                (SYMBOL, Direction.LONG) not in state.positions
                and (SYMBOL, Direction.SHORT) in state.positions
            ),
            "reversed to a short",
        )
        assert state.positions[(SYMBOL, Direction.SHORT)].volume == 2
        await c.notified(f"reverse long {SYMBOL}: accepted")


async def test_close_all_of_a_contract_lists_both_sides_and_closes_both(core_env) -> None:  # type: ignore[no-untyped-def]
    async with console(core_env) as c:
        state = c.state("DQ1")
        await _position(c, Direction.LONG, 1)
        await _position(c, Direction.SHORT, 2)
        other = "au2612.SHFE"
        await _position(c, Direction.LONG, 1, symbol=other)
        await select_row(c, "positions", f"{SYMBOL}|LONG")
        await c.pilot.press("C")
        rows = confirm_rows(c.dialog(ConfirmDialog))
        assert rows["close long"].startswith("SELL CLOSETODAY 1 @ ")
        assert rows["close short"].startswith("BUY CLOSETODAY 2 @ ")
        await c.pilot.press("y")
        await c.until(
            lambda: (
                (SYMBOL, Direction.LONG) not in state.positions
                and (SYMBOL, Direction.SHORT) not in state.positions
            ),
            "both sides closed",
        )
        assert (other, Direction.LONG) in state.positions  # only that contract


async def test_resume_after_the_kill_switch_asks_whether_to_rearm(core_env) -> None:  # type: ignore[no-untyped-def]
    async with console(core_env) as c:
        state = c.state("DQ1")
        last = state.ticks[SYMBOL].last_price
        req = ConditionalRequest(
            vt_symbol=SYMBOL, op=TriggerOp.LE, trigger_price=last - 500, direction=Direction.LONG, volume=1
        )
        created = await c.manager.create_conditional("DQ1", req)
        assert created.ok, created.error
        cond_id = created.result["cond_id"]
        await c.manager.kill_switch("DQ1")
        await c.until(lambda: state.conditionals[cond_id].state is CondState.SUSPENDED, "suspended")
        await c.pilot.press("h")
        rows = confirm_rows(c.dialog(ConfirmDialog))
        assert "1 suspended" in rows["Conditional orders"]
        await c.pilot.press("y")
        await c.until(
            lambda: isinstance(c.app.screen, ConfirmDialog) and "Re-arm" in c.app.screen.title_text,
            "the re-arm question",
        )
        rows = confirm_rows(c.dialog(ConfirmDialog))
        assert rows[SYMBOL].startswith(f"last <= {last - 500:g}")
        await c.pilot.press("y")
        await c.until(lambda: state.conditionals[cond_id].state is CondState.PENDING, "re-armed")


async def test_the_operator_is_told_when_a_conditional_order_fires(core_env) -> None:  # type: ignore[no-untyped-def]
    async with console(core_env) as c:
        state = c.state("DQ1")
        step = state.contracts[SYMBOL].pricetick
        last = state.ticks[SYMBOL].last_price
        ids = []
        for op, away in ((TriggerOp.GE, 1), (TriggerOp.LE, -1)):
            req = ConditionalRequest(
                vt_symbol=SYMBOL, op=op, trigger_price=last + away * step, direction=Direction.LONG, volume=1
            )
            reply = await c.manager.create_conditional("DQ1", req)
            assert reply.ok, reply.error
            ids.append(reply.result["cond_id"])
        for _ in range(50):  # the market moves by hand: one of the two is crossed within a few steps
            if any(state.conditionals[i].state is CondState.TRIGGERED for i in ids):
                break
            await c.step("DQ1", SYMBOL)
        await c.until(lambda: any(state.conditionals[i].order_id for i in ids), "one fired and sent")
        await c.notified("DQ1 conditional fired: sent BUY OPEN 1")


async def test_a_reverse_whose_close_is_cancelled_tells_the_operator_the_open_was_not_sent(core_env) -> None:  # type: ignore[no-untyped-def]
    from core.models import Tick, now

    async with console(core_env) as c:
        state = c.state("DQ1")
        await _position(c, Direction.LONG, 2)
        # the trader's quote says the bid is 30 ticks above the venue's book: its close there rests
        trader = c.manager.proxies["DQ1"].embedded
        assert trader is not None
        real = trader.oms.ticks[SYMBOL]
        step = state.contracts[SYMBOL].pricetick
        high = real.last_price + 30 * step
        trader.on_tick(
            Tick(
                vt_symbol=SYMBOL,
                datetime=now(),
                last_price=high,
                bid_price_1=high - step,
                ask_price_1=high + step,
                bid_volume_1=5,
                ask_volume_1=5,
                limit_up=real.limit_up,
                limit_down=real.limit_down,
            )
        )
        await select_row(c, "positions", f"{SYMBOL}|LONG")
        before = set(state.orders)
        await c.pilot.press("v")
        await c.pilot.press("y")
        await c.notified(f"reverse long {SYMBOL}: accepted")
        await c.until(lambda: len(set(state.orders) - before) == 1, "the close sent")
        (close_id,) = set(state.orders) - before
        assert state.orders[close_id].is_active  # resting
        assert (await c.manager.cancel_order("DQ1", close_id)).ok
        note = await c.notified("the open is NOT sent")
        assert "CANCELLED" in note and "reverse of long 2" in note
        assert [o for o in set(state.orders) - before if state.orders[o].offset is Offset.OPEN] == []


async def test_close_all_of_a_contract_after_the_kill_switch_goes_through_reducing(core_env) -> None:  # type: ignore[no-untyped-def]
    from core.models import TradingState

    async with console(core_env) as c:
        state = c.state("DQ1")
        await _position(c, Direction.LONG, 1)
        await c.manager.kill_switch("DQ1")
        await c.until(lambda: state.info.trading_state is TradingState.HALTED, "halted")  # type: ignore[union-attr]
        await select_row(c, "positions", f"{SYMBOL}|LONG")
        await c.pilot.press("C")
        confirm = c.dialog(ConfirmDialog)
        assert "HALTED: switch it to REDUCING" in confirm.title_text
        assert confirm_rows(confirm)["Trading state"].startswith("HALTED -> REDUCING")
        await c.pilot.press("y")
        await c.until(lambda: (SYMBOL, Direction.LONG) not in state.positions, "closed")
        assert state.info.trading_state is TradingState.REDUCING  # type: ignore[union-attr]


async def test_a_reverse_with_lots_held_by_a_working_close_confirms_and_sends_the_same_volume(
    core_env,
) -> None:  # type: ignore[no-untyped-def]
    async with console(core_env) as c:
        state = c.state("DQ1")
        await _position(c, Direction.LONG, 3)
        # one lot is in a close resting far above the market: 2 are closable
        resting = OrderRequest(
            vt_symbol=SYMBOL,
            direction=Direction.SHORT,
            offset=Offset.CLOSETODAY,
            price=state.ticks[SYMBOL].limit_up,
            volume=1,
        )
        reply = await c.manager.send_order("DQ1", resting)
        assert reply.ok, reply.error
        resting_id = reply.result["order_id"]
        await c.until(lambda: resting_id in state.orders and state.orders[resting_id].is_active, "resting")
        await select_row(c, "positions", f"{SYMBOL}|LONG")
        before = set(state.orders)
        await c.pilot.press("v")
        rows = confirm_rows(c.dialog(ConfirmDialog))
        assert rows["1. close: Offset"] == "CLOSETODAY 2"
        assert rows["2. then open"] == f"SELL OPEN 2 {SYMBOL} at the opposite best"
        await c.pilot.press("y")
        await c.until(lambda: (SYMBOL, Direction.SHORT) in state.positions, "the open filled")
        sent = [state.orders[o] for o in set(state.orders) - before]
        assert sorted((o.offset.name, o.volume) for o in sent) == [("CLOSETODAY", 2), ("OPEN", 2)]
