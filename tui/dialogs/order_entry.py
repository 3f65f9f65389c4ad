"""Order entry: a dialog prefilled from the selected quote or position.

Fields are checked here, before anything is sent, with messages a trader can
act on (unknown symbol, volume <= 0, price off the tick grid, nothing to
close...). Enter on a valid form returns the OrderRequest; the caller then
shows the confirmation. The trader's own risk checks still apply after that.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static

from core.client import AccountState, closable_volume
from core.models import Contract, Direction, Offset, OrderRequest, OrderType, Position, Tick, on_tick_grid
from tui import format as fmt

OFFSETS: list[tuple[str, str]] = [
    ("auto", "auto"),
    ("open", Offset.OPEN.name),
    ("close", Offset.CLOSE.name),
    ("close today", Offset.CLOSETODAY.name),
    ("close yesterday", Offset.CLOSEYESTERDAY.name),
]
TYPES: list[tuple[str, str]] = [
    (t.name.lower(), t.name) for t in (OrderType.LIMIT, OrderType.MARKET, OrderType.FAK, OrderType.FOK)
]
DIRECTIONS: list[tuple[str, str]] = [("buy", Direction.LONG.name), ("sell", Direction.SHORT.name)]


def opposite_best(state: AccountState, vt_symbol: str, direction: Direction) -> float | None:
    """What a marketable order pays: the ask to buy, the bid to sell."""
    tick = state.ticks.get(vt_symbol)
    if tick is None:
        return None
    value = tick.ask_price_1 if direction is Direction.LONG else tick.bid_price_1
    return value or tick.last_price or None


def step_price(text: str, contract: Contract, tick: Tick | None, steps: int) -> str:
    """The price ``steps`` ticks from ``text`` (a price typed in the form), on the contract's
    grid and within today's limits (from ``tick``), as the price field shows it; ValueError
    (its message for the operator) when ``text`` is not a price.

    Decimal arithmetic on the tick's own digits, so a hundred steps of 0.02 land on the grid
    with no float drift. A price off the grid steps to the grid price on that side (912.33 up
    one tick of 0.02 is 912.34), one beyond a limit comes back inside it, and no step goes past
    limit-up, below limit-down or below one tick.
    """
    raw = text.replace(",", "").strip()
    try:
        price = Decimal(raw)
    except InvalidOperation:
        price = Decimal("NaN")
    if not price.is_finite():
        raise ValueError(f"Price: '{raw}' is not a price to step from")
    size = Decimal(repr(contract.pricetick))
    grid = price / size
    n = grid.to_integral_value(ROUND_FLOOR if steps > 0 else ROUND_CEILING) + steps
    low = Decimal(1)
    if tick is not None and tick.limit_down > 0:
        low = max(low, (Decimal(repr(tick.limit_down)) / size).to_integral_value(ROUND_CEILING))
    n = max(n, low)
    if tick is not None and tick.limit_up > 0:
        n = min(n, (Decimal(repr(tick.limit_up)) / size).to_integral_value(ROUND_FLOOR))
    return f"{n * size:.{contract.decimals}f}"


def closable(state: AccountState, vt_symbol: str, position_direction: Direction) -> tuple[float, float]:
    """(today, yesterday) volume of a position not already in working close orders."""
    left = closable_volume(state.positions.get((vt_symbol, position_direction)), state.orders.values())
    return left.today, left.yesterday


def auto_offset(state: AccountState, vt_symbol: str, direction: Direction, volume: float) -> Offset:
    """Close an opposite position when there is one big enough, else open.

    SHFE/INE: yesterday's volume first (CLOSEYESTERDAY), else today's (CLOSETODAY);
    an order cannot mix both, so a volume that needs both opens a new position
    only if neither part is enough, and says so (the operator can use ``c``).
    """
    position_direction = direction.opposite
    today, yesterday = closable(state, vt_symbol, position_direction)
    if today + yesterday <= 0:
        return Offset.OPEN
    if not vt_symbol.endswith((".SHFE", ".INE")):
        return Offset.CLOSE if volume <= today + yesterday else Offset.OPEN
    if volume <= yesterday:
        return Offset.CLOSEYESTERDAY
    if volume <= today:
        return Offset.CLOSETODAY
    return Offset.OPEN


def _side(direction: Direction) -> str:
    return "BUY" if direction is Direction.LONG else "SELL"


def order_rows(account_id: str, req: OrderRequest, state: AccountState) -> list[tuple[str, str | Text]]:
    """What the confirmation shows: everything that will be sent, and what it costs."""
    contract = state.contracts.get(req.vt_symbol)
    price_text = "market" if req.type is OrderType.MARKET else fmt.price(req.price, contract)
    rows: list[tuple[str, str | Text]] = [
        ("Account", Text(account_id, style="bold reverse")),
        ("Side", Text(_side(req.direction), style="bold")),
        ("Offset", req.offset.name),
        ("Volume", fmt.volume(req.volume)),
        ("Symbol", req.vt_symbol),
        ("Type", req.type.name),
        ("Price", price_text),
    ]
    if contract is not None:
        ref = req.price
        if req.type is OrderType.MARKET:
            ref = opposite_best(state, req.vt_symbol, req.direction) or 0.0
        rows.append(("Notional", fmt.amount(contract.notional(ref, req.volume))))
        if req.offset is Offset.OPEN:
            margin = contract.margin(ref, req.volume)
            acc = state.account
            short = acc is not None and margin > acc.available
            # more margin than the account has: the venue will refuse it; said in colour, not hidden
            warn = "bold red" if short else ""
            rows.append(("Est. margin", Text(fmt.amount(margin), style=warn)))
            if acc is not None:
                rows.append(("Available", Text(fmt.amount(acc.available), style=warn)))
            if short and acc is not None:
                rows.append(
                    (
                        "WARNING",
                        Text(
                            f"margin exceeds available by {fmt.amount(margin - acc.available)}: "
                            "the venue will most likely reject it",
                            style="bold red",
                        ),
                    )
                )
        rows.append(("Est. fee", fmt.amount(contract.commission(ref, req.volume, req.offset))))
    return rows


def close_rows(
    account_id: str, pos: Position, state: AccountState
) -> tuple[list[tuple[str, str | Text]], float | None]:
    """Confirmation rows for closing ``pos`` at the opposite best price, and that price."""
    order_direction = pos.direction.opposite
    price = opposite_best(state, pos.vt_symbol, order_direction)
    contract = state.contracts.get(pos.vt_symbol)
    today, yesterday = closable(state, pos.vt_symbol, pos.direction)
    if pos.vt_symbol.endswith((".SHFE", ".INE")):
        legs = " + ".join(
            f"{name} {vol:g}"
            for name, vol in (("CLOSEYESTERDAY", yesterday), ("CLOSETODAY", today))
            if vol > 0
        )
    else:
        legs = f"CLOSE {today + yesterday:g}"
    rows: list[tuple[str, str | Text]] = [
        ("Account", Text(account_id, style="bold reverse")),
        ("Side", Text(_side(order_direction), style="bold")),
        ("Offset", legs or "nothing closable (working close orders hold it)"),
        ("Volume", fmt.volume(today + yesterday)),
        ("Symbol", pos.vt_symbol),
        ("Price", fmt.price(price or 0.0, contract)),
        ("Position P&L", fmt.amount(pos.pnl)),
    ]
    if contract is not None and price is not None:
        rows.append(("Notional", fmt.amount(contract.notional(price, today + yesterday))))
    return rows, price


class PriceInput(Input):
    """The price field: + / - (or Up / Down) move the price by one tick of the contract."""

    BINDINGS = [
        # priority: + and - are printable, and a field takes printable keys before any binding
        Binding("plus,up", "step(1)", "Up a tick", show=False, priority=True),
        Binding("minus,down", "step(-1)", "Down a tick", show=False, priority=True),
    ]

    def action_step(self, steps: int) -> None:
        screen = self.screen
        if isinstance(screen, OrderEntryDialog):
            screen.step_price(steps)


def quote_line(state: AccountState, vt_symbol: str) -> Text:
    """The form's live quote of ``vt_symbol``: best bid and ask with their volumes, the last
    price, and today's limits."""
    tick = state.ticks.get(vt_symbol)
    contract = state.contracts.get(vt_symbol)
    if tick is None:
        return Text(f"no quote for {vt_symbol or 'this symbol'}", style="italic")
    line = Text()
    for label, price, volume in (
        ("Bid", tick.bid_price_1, tick.bid_volume_1),
        ("Ask", tick.ask_price_1, tick.ask_volume_1),
    ):
        line.append(f"{label} ", style="dim")
        line.append(fmt.price(price, contract), style="bold")
        line.append(f" x{fmt.volume(volume)}   " if price else "   ")
    line.append("Last ", style="dim")
    line.append(fmt.price(tick.last_price, contract))
    line.append("\nLimit up ", style="dim")
    line.append(fmt.price(tick.limit_up, contract))
    line.append("   Limit down ", style="dim")
    line.append(fmt.price(tick.limit_down, contract))
    if contract is not None:
        line.append("   Tick ", style="dim")
        line.append(f"{contract.pricetick:g}")
    return line


class OrderEntryDialog(ModalScreen[OrderRequest | None]):
    """Enter in a text field (symbol, price, volume) sends the form for confirmation; Esc
    abandons it.

    Every field is set from the keyboard: Tab moves between them; on Side, Offset and Type,
    Enter (or Space, Up, Down) opens the list, the arrows choose, Enter picks and Esc closes
    the list only. Neither ever sends the form. ``draft`` refills it, e.g. with the order
    the operator did not confirm.
    """

    BINDINGS = [Binding("escape", "abandon", "Abandon")]  # not priority: an open list takes Esc first

    def __init__(
        self,
        account_id: str,
        state: AccountState,
        *,
        direction: Direction,
        vt_symbol: str | None,
        position_direction: Direction | None = None,
        draft: OrderRequest | None = None,
        volume: float = 1.0,
        volume_for: Callable[[str], float] | None = None,
    ) -> None:
        """``volume``: the lots proposed for a new order (not from a position or a draft);
        ``volume_for``: the lots to propose for another contract typed in the form (while
        the volume field still holds what was proposed, not a figure the operator typed)."""
        super().__init__()
        self.account_id = account_id
        self.state = state
        self.draft = draft
        if draft is not None:
            direction, vt_symbol, position_direction = draft.direction, draft.vt_symbol, None
        self.direction = direction
        self.vt_symbol = vt_symbol or next(iter(state.ticks), "")
        self.prefill_volume = draft.volume if draft is not None else volume
        if position_direction is not None and position_direction is direction.opposite:
            # from a position: the order that closes it
            pos = state.positions.get((self.vt_symbol, position_direction))
            if pos is not None:
                self.prefill_volume = sum(closable(state, self.vt_symbol, position_direction)) or 1.0
        self.volume_for = volume_for
        self._proposed = (self.vt_symbol, f"{self.prefill_volume:g}")  # (for, the volume text)

    def compose(self) -> ComposeResult:
        best = opposite_best(self.state, self.vt_symbol, self.direction) if self.vt_symbol else None
        draft = self.draft
        if draft is not None and draft.type is not OrderType.MARKET:
            best = draft.price
        contract = self.state.contracts.get(self.vt_symbol)
        price_text = fmt.price(best, contract).replace(",", "") if best else ""
        offset = draft.offset.name if draft is not None and draft.offset is not Offset.NONE else "auto"
        order_type = draft.type.name if draft is not None else OrderType.LIMIT.name
        with Vertical(id="entry-box"):
            yield Static(Text(f"New order — {self.account_id}", style="bold"), id="entry-title")
            yield Static(quote_line(self.state, self.vt_symbol), id="entry-quote")
            with Grid(id="entry-grid"):
                yield Label("Symbol")
                yield Input(self.vt_symbol, id="symbol", placeholder="au2612.SHFE")
                yield Label("Side")
                yield Select(DIRECTIONS, value=self.direction.name, allow_blank=False, id="direction")
                yield Label("Offset")
                yield Select(OFFSETS, value=offset, allow_blank=False, id="offset")
                yield Label("Type")
                yield Select(TYPES, value=order_type, allow_blank=False, id="type")
                yield Label("Price")
                yield PriceInput(price_text, id="price", placeholder="opposite best")
                yield Label("Volume")
                yield Input(f"{self.prefill_volume:g}", id="volume")
            yield Static("", id="entry-error")
            yield Static(
                Text("Enter: review  Tab: next  +/-: price tick  Esc: abandon", style="italic"),
                id="entry-keys",
            )

    def on_mount(self) -> None:
        self.query_one("#volume", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    @on(Select.Changed, "#direction")
    @on(Input.Changed, "#symbol")
    def _reprice(self) -> None:
        """A new side or symbol: its quote, and its opposite best price proposed again."""
        self.show_quote(self.state)
        symbol = self.query_one("#symbol", Input).value.strip()
        self._propose_volume(symbol)
        direction = Direction[str(self.query_one("#direction", Select).value)]
        draft = self.draft
        if draft is not None and (symbol, direction) == (draft.vt_symbol, draft.direction):
            return  # the draft's own price stays (the fields reporting their first values)
        best = opposite_best(self.state, symbol, direction)
        if best is not None:
            contract = self.state.contracts.get(symbol)
            self.query_one("#price", Input).value = fmt.price(best, contract).replace(",", "")

    def _propose_volume(self, symbol: str) -> None:
        """Another known contract in the symbol field: its own proposed volume, unless the
        operator has typed one (a proposal for rb is not one for au)."""
        proposed_for, text = self._proposed
        if self.volume_for is None or symbol == proposed_for or symbol not in self.state.contracts:
            return
        field = self.query_one("#volume", Input)
        if field.value.strip() != text:
            return  # the operator's own figure
        text = f"{self.volume_for(symbol):g}"
        self._proposed = (symbol, text)
        field.value = text

    def show_quote(self, state: AccountState, changed: set[str] | None = None) -> None:
        """The live quote line, for ticks of the form's symbol (``changed``: the symbols that
        ticked; None: any may have). The price field is the operator's: it never moves."""
        self.state = state
        symbol = self.query_one("#symbol", Input).value.strip()
        if changed is None or symbol in changed:
            self.query_one("#entry-quote", Static).update(quote_line(state, symbol))

    def step_price(self, steps: int) -> None:
        """+/- in the price field: one tick up or down, within today's limits."""
        symbol = self.query_one("#symbol", Input).value.strip()
        contract = self.state.contracts.get(symbol)
        if contract is None:
            self._error(f"Price: no contract '{symbol}' to step the price of")
            return
        field = self.query_one("#price", Input)
        tick = self.state.ticks.get(symbol)
        text = field.value
        if not text.strip():  # nothing typed: step from the price a marketable order pays
            direction = Direction[str(self.query_one("#direction", Select).value)]
            best = opposite_best(self.state, symbol, direction)
            if best is None:
                self._error(f"Price: no quote for {symbol} to step from: type a price")
                return
            text = f"{best:.{contract.decimals}f}"
        try:
            value = step_price(text, contract, tick, steps)
        except ValueError as exc:
            self._error(str(exc))
            return
        self._error("")
        if value == text.replace(",", "").strip() and tick is not None:
            limit = tick.limit_up if steps > 0 else tick.limit_down
            if limit:
                which = "limit-up" if steps > 0 else "limit-down"
                self._note(f"Price: at today's {which} {fmt.price(limit, contract)}")
        field.value = value
        field.cursor_position = len(value)

    def _error(self, message: str) -> None:
        self.query_one("#entry-error", Static).update(Text(message, style="bold red"))

    def _note(self, message: str) -> None:
        self.query_one("#entry-error", Static).update(Text(message, style="yellow"))

    def validate(self) -> OrderRequest | str:
        """The request, or what is wrong with the form."""
        symbol = self.query_one("#symbol", Input).value.strip()
        contract: Contract | None = self.state.contracts.get(symbol)
        if not symbol:
            return "Symbol: enter a contract, e.g. au2612.SHFE"
        if contract is None:
            known = ", ".join(list(self.state.contracts)[:6])
            return f"Symbol: unknown contract '{symbol}' in {self.account_id} (known: {known})"
        direction = Direction[str(self.query_one("#direction", Select).value)]
        order_type = OrderType[str(self.query_one("#type", Select).value)]
        try:
            volume = float(self.query_one("#volume", Input).value.replace(",", ""))
        except ValueError:
            return "Volume: enter a whole number of lots"
        if not math.isfinite(volume) or volume <= 0 or volume != int(volume):
            return f"Volume: must be a whole number of lots above 0, got {self.query_one('#volume', Input).value}"
        price = 0.0
        if order_type is not OrderType.MARKET:
            raw = self.query_one("#price", Input).value.replace(",", "").strip()
            try:
                price = float(raw)
            except ValueError:
                return "Price: enter a number"
            if not math.isfinite(price) or price <= 0:
                return "Price: must be above 0"
            if not on_tick_grid(price, contract.pricetick):
                d = contract.decimals
                lower = contract.round_price(price - contract.pricetick / 2)
                return (
                    f"Price: {raw} is not on the {contract.pricetick:g} tick grid of {symbol} "
                    f"(nearest {lower:.{d}f} / {lower + contract.pricetick:.{d}f})"
                )
            tick = self.state.ticks.get(symbol)
            if tick is not None and tick.limit_up and price > tick.limit_up + 1e-9:
                return f"Price: {raw} is above today's limit-up {fmt.price(tick.limit_up, contract)}"
            if tick is not None and tick.limit_down and price < tick.limit_down - 1e-9:
                return f"Price: {raw} is below today's limit-down {fmt.price(tick.limit_down, contract)}"
        choice = str(self.query_one("#offset", Select).value)
        if choice == "auto":
            offset = auto_offset(self.state, symbol, direction, volume)
        else:
            offset = Offset[choice]
            if offset.is_close:
                today, yesterday = closable(self.state, symbol, direction.opposite)
                have = {Offset.CLOSETODAY: today, Offset.CLOSEYESTERDAY: yesterday}.get(
                    offset, today + yesterday
                )
                if symbol.endswith((".SHFE", ".INE")) and offset is Offset.CLOSE:
                    have = yesterday  # SHFE/INE: CLOSE closes yesterday's volume
                if volume > have:
                    what = direction.opposite.name.lower()
                    return f"Offset: {offset.name} {volume:g} > closable {have:g} of the {what} {symbol} position"
        return OrderRequest(
            vt_symbol=symbol,
            direction=direction,
            offset=offset,
            type=order_type,
            price=price,
            volume=volume,
            account_id=self.account_id,
        )

    def action_submit(self) -> None:
        result = self.validate()
        if isinstance(result, str):
            self._error(result)
            return
        self.dismiss(result)

    def action_abandon(self) -> None:
        self.dismiss(None)
