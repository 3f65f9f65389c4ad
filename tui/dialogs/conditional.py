"""Conditional order entry (条件单): a dialog prefilled from the selected quote or position.

From a position it proposes a stop-loss that closes it (the opposite side, CLOSE, its volume,
``<=`` below the last price for a long); from a quote, a price-triggered entry. Fields are
checked here with messages a trader can act on; Enter on a valid form returns the
``ConditionalRequest``, and the caller shows the confirmation of what will be sent when it
fires (``conditional_rows``). The trader checks it again when it arms it, and its order passes
the risk rules when it fires.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static

from core.client import AccountState
from core.models import (
    CondExpiry,
    ConditionalOrder,
    ConditionalRequest,
    CondKind,
    CondPrice,
    Direction,
    Offset,
    Position,
    TriggerOp,
    TriggerSource,
    now,
    on_tick_grid,
)
from tui import format as fmt
from tui.dialogs.order_entry import DIRECTIONS, quote_line

KINDS = [
    ("entry", CondKind.ENTRY.name),
    ("stop-loss", CondKind.STOP_LOSS.name),
    ("take-profit", CondKind.TAKE_PROFIT.name),
]
SOURCES = [(s.name.lower(), s.name) for s in TriggerSource]
OPS = [(op.sign, op.name) for op in TriggerOp]
OFFSETS = [("open", Offset.OPEN.name), ("close", Offset.CLOSE.name)]
EXPIRIES = [("good till cancelled", CondExpiry.GTC.name), ("today only", CondExpiry.DAY.name)]
BEST_WORDS = ("", "best", "bid", "ask")  # the price field: the opposite best


def preview(req: ConditionalRequest, account_id: str) -> ConditionalOrder:
    """What the trader will hold for ``req`` (for the confirmation's words)."""
    stamp = now()
    return ConditionalOrder(
        account_id=account_id,
        cond_id="(new)",
        vt_symbol=req.vt_symbol,
        kind=req.kind,
        source=req.source,
        op=req.op,
        trigger_price=req.trigger_price,
        direction=req.direction,
        offset=Offset.CLOSE if req.kind is not CondKind.ENTRY else req.offset,
        volume=req.volume,
        price_type=req.price_type,
        price=req.price,
        offset_ticks=req.offset_ticks,
        trailing=req.trailing,
        expiry=req.expiry,
        created_at=stamp,
        updated_at=stamp,
    )


def conditional_rows(
    account_id: str, req: ConditionalRequest, state: AccountState
) -> list[tuple[str, str | Text]]:
    """The confirmation: the condition, exactly the order sent when it holds, and its rules."""
    cond = preview(req, account_id)
    contract = state.contracts.get(req.vt_symbol)
    tick = state.ticks.get(req.vt_symbol)
    now_words = ""
    if tick is not None:
        value = {
            TriggerSource.LAST: tick.last_price,
            TriggerSource.BID: tick.bid_price_1,
            TriggerSource.ASK: tick.ask_price_1,
        }[req.source]
        now_words = f" (now {fmt.price(value, contract)})"
    if not cond.offset.is_close:
        legs = cond.offset.name
    elif req.vt_symbol.endswith((".SHFE", ".INE")):
        legs = "CLOSEYESTERDAY first, then CLOSETODAY (as closable when it fires)"
    else:
        legs = "CLOSE (no more than is closable when it fires)"
    rows: list[tuple[str, str | Text]] = [
        ("Account", Text(account_id, style="bold reverse")),
        ("Symbol", req.vt_symbol),
        ("Kind", cond.kind.name.lower().replace("_", "-")),
        ("When", Text(f"{cond.condition_words()}{now_words}", style="bold")),
        ("Then send", Text(cond.order_words(), style="bold")),
        ("Offset", legs),
    ]
    if req.price_type is CondPrice.BEST:
        rows.append(
            (
                "Price",
                "the opposite best when it fires"
                + (f", {req.offset_ticks} tick(s) through" if req.offset_ticks else ""),
            )
        )
    else:
        rows.append(("Price", fmt.price(req.price, contract)))
    if req.trailing:
        rows.append(
            (
                "Trailing",
                f"the trigger follows the {req.source.name.lower()} at {req.trailing:g}, only towards it",
            )
        )
    rows += [
        (
            "Expiry",
            "today only (until the trading day ends)"
            if req.expiry is CondExpiry.DAY
            else "good till cancelled",
        ),
        (
            "Held by",
            "the trader: fires at most once, through the risk rules; paused while the venue is down or the account HALTED",
        ),
    ]
    return rows


class ConditionalDialog(ModalScreen[ConditionalRequest | None]):
    """Enter in a text field reviews the form; Esc abandons it (as the order entry)."""

    BINDINGS = [Binding("escape", "abandon", "Abandon")]

    def __init__(
        self, account_id: str, state: AccountState, *, vt_symbol: str | None, position: Position | None = None
    ) -> None:
        super().__init__()
        self.account_id = account_id
        self.state = state
        self.position = position
        self.vt_symbol = (
            position.vt_symbol if position is not None else (vt_symbol or next(iter(state.ticks), ""))
        )

    def compose(self) -> ComposeResult:
        contract = self.state.contracts.get(self.vt_symbol)
        tick = self.state.ticks.get(self.vt_symbol)
        last = tick.last_price if tick is not None else 0.0
        step = contract.pricetick if contract is not None else 0.0
        pos = self.position
        if pos is not None:  # protect the position: a stop-loss 1 % away, closing all of it
            kind, direction, offset = CondKind.STOP_LOSS, pos.direction.opposite, Offset.CLOSE
            falls = pos.direction is Direction.LONG
            op = TriggerOp.LE if falls else TriggerOp.GE
            away = last * 0.01
            trigger = last - away if falls else last + away
            volume = pos.volume
        else:
            kind, direction, offset, op, volume = (
                CondKind.ENTRY,
                Direction.LONG,
                Offset.OPEN,
                TriggerOp.GE,
                1.0,
            )
            trigger = last + 5 * step
        trigger_text = (
            fmt.price(contract.round_price(trigger), contract).replace(",", "")
            if contract and trigger > 0
            else ""
        )
        with Vertical(id="cond-box"):
            yield Static(
                Text(f"New conditional order — {self.account_id}  {self.vt_symbol}", style="bold"),
                id="cond-title",
            )
            yield Static(quote_line(self.state, self.vt_symbol), id="cond-quote")
            with Grid(id="cond-grid"):
                yield Label("Kind")
                yield Select(KINDS, value=kind.name, allow_blank=False, id="cond-kind")
                yield Label("Watch")
                yield Select(SOURCES, value=TriggerSource.LAST.name, allow_blank=False, id="cond-source")
                yield Label("When")
                yield Select(OPS, value=op.name, allow_blank=False, id="cond-op")
                yield Label("Trigger")
                yield Input(trigger_text, id="cond-trigger", placeholder="trigger price")
                yield Label("Side")
                yield Select(DIRECTIONS, value=direction.name, allow_blank=False, id="cond-direction")
                yield Label("Offset")
                yield Select(OFFSETS, value=offset.name, allow_blank=False, id="cond-offset")
                yield Label("Volume")
                yield Input(f"{volume:g}", id="cond-volume")
                yield Label("Price")
                yield Input("best", id="cond-price", placeholder="best, or a limit price")
                yield Label("Ticks")
                yield Input("0", id="cond-ticks", placeholder="through the best")
                yield Label("Trailing")
                yield Input("0", id="cond-trailing", placeholder="distance, 0 = none")
                yield Label("Expiry")
                yield Select(EXPIRIES, value=CondExpiry.GTC.name, allow_blank=False, id="cond-expiry")
            yield Static("", id="cond-error")
            yield Static(Text("Enter: review  Tab: next  Esc: abandon", style="italic"), id="cond-keys")

    def on_mount(self) -> None:
        self.query_one("#cond-trigger", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def _value(self, select_id: str) -> str:
        return str(self.query_one(f"#{select_id}", Select).value)

    def _number(self, input_id: str) -> float | None:
        raw = self.query_one(f"#{input_id}", Input).value.replace(",", "").strip()
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    def validate(self) -> ConditionalRequest | str:
        """The request, or what is wrong with the form."""
        contract = self.state.contracts.get(self.vt_symbol)
        if contract is None:
            return f"Symbol: unknown contract '{self.vt_symbol}' in {self.account_id}"
        grid = contract.pricetick
        trigger = self._number("cond-trigger")
        if trigger is None or trigger <= 0:
            return "Trigger: enter a price above 0"
        if not on_tick_grid(trigger, grid):
            return f"Trigger: {trigger:g} is not on the {grid:g} tick grid of {self.vt_symbol}"
        volume = self._number("cond-volume")
        if volume is None or volume <= 0 or volume != int(volume):
            return "Volume: a whole number of lots above 0"
        raw_price = self.query_one("#cond-price", Input).value.strip().lower()
        price = 0.0
        price_type = CondPrice.BEST
        if raw_price not in BEST_WORDS:
            value = self._number("cond-price")
            if value is None or value <= 0:
                return "Price: 'best' (the opposite best when it fires) or a limit price"
            if not on_tick_grid(value, grid):
                return f"Price: {value:g} is not on the {grid:g} tick grid of {self.vt_symbol}"
            price, price_type = value, CondPrice.LIMIT
        ticks = self._number("cond-ticks")
        if ticks is None or ticks < 0 or ticks != int(ticks) or ticks > 1000:
            return "Ticks: a whole number of ticks through the best, 0 to 1000"
        trailing = self._number("cond-trailing")
        if trailing is None or trailing < 0:
            return "Trailing: a distance in price (0 = none)"
        if trailing and trailing < grid - 1e-9:
            return f"Trailing: at least one tick ({grid:g})"
        kind = CondKind[self._value("cond-kind")]
        offset = Offset[self._value("cond-offset")]
        if kind is not CondKind.ENTRY and not offset.is_close:
            return f"Offset: a {kind.name.lower().replace('_', '-')} closes its position: choose close"
        return ConditionalRequest(
            vt_symbol=self.vt_symbol,
            kind=kind,
            source=TriggerSource[self._value("cond-source")],
            op=TriggerOp[self._value("cond-op")],
            trigger_price=trigger,
            direction=Direction[self._value("cond-direction")],
            offset=offset,
            volume=volume,
            price_type=price_type,
            price=price,
            offset_ticks=int(ticks),
            trailing=trailing,
            expiry=CondExpiry[self._value("cond-expiry")],
            account_id=self.account_id,
        )

    def action_submit(self) -> None:
        result = self.validate()
        if isinstance(result, str):
            self.query_one("#cond-error", Static).update(Text(result, style="bold red"))
            return
        self.dismiss(result)

    def action_abandon(self) -> None:
        self.dismiss(None)
