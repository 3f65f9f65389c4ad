"""Account panel: funds and the equity curve."""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from core.client import AccountState
from tui import format as fmt


class FundsPanel(Vertical):
    """Balance, available, margin, P&L; the equity curve (stored snapshots + live point)."""

    CHART_INTERVAL = 1.0  # seconds between chart redraws (plotting is not free)

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme
        self._chart_at = 0.0
        self._chart_key: tuple[str, int] | None = None
        self._state: AccountState | None = None
        self._figures: tuple[object, ...] | None = None  # what the figures show now
        self._figure_lines = 0

    def compose(self) -> ComposeResult:
        yield Static(id="funds-figures")
        yield PlotextPlot(id="equity-chart")

    def on_resize(self) -> None:
        if self._state is not None:
            self.show(self._state)

    def show(self, state: AccountState) -> None:
        self._state = state
        acc = state.account
        pairs: list[tuple[str, str | Text]] = []
        if acc is not None:
            pairs = [
                ("Balance", fmt.amount(acc.balance)),
                ("Available", fmt.amount(acc.available)),
                ("Margin", fmt.amount(acc.margin)),
                ("Today P&L", fmt.signed(acc.today_pnl, fmt.amount(acc.today_pnl), self.scheme)),
                ("Position P&L", fmt.signed(acc.position_pnl, fmt.amount(acc.position_pnl), self.scheme)),
                ("Close P&L", fmt.signed(acc.close_pnl, fmt.amount(acc.close_pnl), self.scheme)),
                ("Frozen", fmt.amount(acc.frozen)),
                ("Commission", fmt.amount(acc.commission)),
            ]
        # two label/value pairs a row when there is room, one when narrow (100 columns)
        per_row = 2 if self.size.width >= 56 or not self.size.width else 1
        figures = (per_row, *((label, str(value), getattr(value, "style", "")) for label, value in pairs))
        if figures != self._figures:
            # only a new height (more or fewer lines) needs a layout, which redraws the
            # whole screen; new figures in the same lines repaint just themselves
            lines = max(1, -(-len(pairs) // per_row))
            self.query_one("#funds-figures", Static).update(
                self._grid(pairs, per_row), layout=lines != self._figure_lines
            )
            self._figures, self._figure_lines = figures, lines
        self._chart(state, force=False)

    @staticmethod
    def _grid(pairs: list[tuple[str, str | Text]], per_row: int) -> Table:
        grid = Table.grid(padding=(0, 1), expand=True)
        for _ in range(per_row):
            grid.add_column(no_wrap=True)
            grid.add_column(justify="right", no_wrap=True)
        if not pairs:
            grid.add_row("no account data yet", *[""] * (per_row * 2 - 1))
        for i in range(0, len(pairs), per_row):
            row: list[str | Text] = []
            for label, value in pairs[i : i + per_row]:
                row += [label, value]
            grid.add_row(*row)
        return grid

    def _chart(self, state: AccountState, *, force: bool) -> None:
        now = time.monotonic()
        key = (state.account_id, len(state.equity))
        if not force and key == self._chart_key and now - self._chart_at < self.CHART_INTERVAL:
            return
        self._chart_at, self._chart_key = now, key
        points = list(state.equity)[-600:]
        times = [f"{p.datetime:%H:%M}" for p in points]
        values = [p.balance for p in points]
        if state.account is not None:
            times.append("now")
            values.append(state.account.balance)  # the live point
        chart = self.query_one("#equity-chart", PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("equity")
        if len(values) >= 2:
            xs = list(range(len(values)))
            plt.plot(xs, values, marker="braille")
            step = max(1, len(xs) // 4)
            plt.xticks(xs[::step], times[::step])
            # our own range and labels: plotext's for a near-flat curve are far off the values
            lo, hi = min(values), max(values)
            pad = max((hi - lo) * 0.1, abs(hi) * 0.0005, 1.0)
            plt.ylim(lo - pad, hi + pad)
            # one label, the current equity: a short chart has room for one, and it is the one
            # that matters
            plt.yticks([values[-1]], [f"{values[-1]:,.0f}"])
        chart.refresh()
