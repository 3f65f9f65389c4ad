"""Account panel: funds and the equity curve.

The figures come first, by priority (balance, today's P&L, available, margin, ...), two a
line when they fit, with short labels when the long ones do not. Under them the chart's
title line (the range and the equity now) and the chart, in the time range the operator
picks (today / 5 days / all, ``e``), taking the rest of the panel; where fewer than
``CHART_MIN`` lines are left for it the title line carries a sparkline of the same range.
"""

from __future__ import annotations

import time

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from core.client import AccountState
from core.models import EquityPoint
from tui import format as fmt
from tui.widgets.equity import RANGES, EquityRange, account_now, in_range, merge, resample, sparkline

Figure = tuple[str, str, str | Text]  # label, short label, value


class FundsPanel(Vertical):
    """Balance, available, margin, P&L; the equity curve (stored history + live points)."""

    CHART_INTERVAL = 1.0  # seconds between chart redraws (plotting is not free)
    CHART_MIN = 3  # lines of chart (two of curve, one of times) below which it is a sparkline

    def __init__(self, *, scheme: str = "cn", id: str | None = None) -> None:
        super().__init__(id=id)
        self.scheme = scheme
        self.range_index = 0
        self._history: dict[tuple[str, int], list[EquityPoint]] = {}  # (account, range) -> stored
        self._chart_at = 0.0
        self._chart_key: tuple[object, ...] | None = None
        self._state: AccountState | None = None
        self._figures: tuple[object, ...] | None = None  # what the figures show now
        self._figure_lines = 0
        self._charted = False  # whether the chart (not the sparkline) is shown

    @property
    def range(self) -> EquityRange:
        return RANGES[self.range_index]

    def compose(self) -> ComposeResult:
        yield Static(id="funds-figures")
        yield Static(id="equity-title")
        yield PlotextPlot(id="equity-chart")

    def on_resize(self) -> None:
        if self._state is not None:
            self._figures = None
            self.show(self._state)

    # ------------------------------------------------------------------ the range

    def next_range(self) -> EquityRange:
        """Switch to the next time range (the caller loads its history)."""
        self.range_index = (self.range_index + 1) % len(RANGES)
        self._redraw()
        return self.range

    def set_history(self, account_id: str, range_index: int, points: list[EquityPoint]) -> None:
        """The stored curve of one range of one account (``HistoryRequest.every`` apart)."""
        self._history[(account_id, range_index)] = points
        self._redraw()

    def forget_history(self) -> None:
        self._history.clear()

    def _redraw(self) -> None:
        if self._state is not None:
            self._chart_key = None
            self._chart(self._state)

    def points(self, state: AccountState) -> list[EquityPoint]:
        """The curve of the current range: the stored history (when loaded), then the live
        points after it."""
        start = self.range.start(account_now(state))
        stored = self._history.get((state.account_id, self.range_index), [])
        return in_range(merge(stored, state.equity), start)

    # ------------------------------------------------------------------ drawing

    def show(self, state: AccountState) -> None:
        self._state = state
        acc = state.account
        figures: list[Figure] = []
        if acc is not None:
            signed = fmt.signed
            figures = [
                ("Balance", "Balance", fmt.amount(acc.balance)),
                ("Today P&L", "Today", signed(acc.today_pnl, fmt.amount(acc.today_pnl), self.scheme)),
                ("Available", "Avail", fmt.amount(acc.available)),
                ("Margin", "Margin", fmt.amount(acc.margin)),
                (
                    "Position P&L",
                    "Pos P&L",
                    signed(acc.position_pnl, fmt.amount(acc.position_pnl), self.scheme),
                ),
                ("Close P&L", "Closed", signed(acc.close_pnl, fmt.amount(acc.close_pnl), self.scheme)),
                ("Commission", "Fees", fmt.amount(acc.commission)),
                ("Frozen", "Frozen", fmt.amount(acc.frozen)),
            ]
        width, height = self.size
        per_row, short = self._arrangement(figures, width)
        lines = max(1, -(-len(figures) // per_row))
        charted = not height or height - lines - 1 >= self.CHART_MIN
        if not charted:  # the title line stays: the figures of lowest priority give way
            lines = max(1, min(lines, height - 1))
            figures = figures[: lines * per_row]
        shown = tuple((label, str(value), getattr(value, "style", "")) for label, _, value in figures)
        key = (per_row, short, lines, *shown)
        if key != self._figures:
            # only a new height (more or fewer lines) needs a layout, which redraws the
            # whole screen; new figures in the same lines repaint just themselves
            self.query_one("#funds-figures", Static).update(
                self._grid(figures, per_row, short), layout=lines != self._figure_lines
            )
            self._figures, self._figure_lines = key, lines
        if charted != self._charted:
            self._charted = charted
            self.query_one("#equity-chart").display = charted
            self._chart_key = None
        self._chart(state)

    @staticmethod
    def _arrangement(figures: list[Figure], width: int) -> tuple[int, bool]:
        """Figures a line (2 or 1) and whether the labels are the short ones: two a line
        with the long labels, else two with the short ones, else one (long if they fit)."""
        if not width or not figures:
            return 2, False
        values = max(cell_len(str(v)) for _, _, v in figures)
        long = max(cell_len(label) for label, _, _ in figures)
        short = max(cell_len(label) for _, label, _ in figures)
        for per_row, labels, is_short in ((2, long, False), (2, short, True), (1, long, False)):
            if per_row * (labels + values) + (2 * per_row - 1) <= width:
                return per_row, is_short
        return 1, True

    @staticmethod
    def _grid(figures: list[Figure], per_row: int, short: bool) -> Table:
        grid = Table.grid(padding=(0, 1), expand=True)
        for _ in range(per_row):
            grid.add_column(no_wrap=True)
            grid.add_column(justify="right", no_wrap=True)
        if not figures:
            grid.add_row("no account data yet", *[""] * (per_row * 2 - 1))
        for i in range(0, len(figures), per_row):
            row: list[str | Text] = []
            for label, short_label, value in figures[i : i + per_row]:
                row += [short_label if short else label, value]
            grid.add_row(*row)
        return grid

    def title(self, state: AccountState) -> Text:
        """``equity today 1,000,636`` and the key that switches the range."""
        acc = state.account
        line = Text("equity ", style="bold")
        line.append(self.range.name, style="bold cyan")
        if acc is not None:
            line.append(f"  {acc.balance:,.2f}")
        line.append("  e: range", style="dim")
        return line

    def _chart(self, state: AccountState) -> None:
        moment = time.monotonic()
        key = (state.account_id, self.range_index, len(state.equity), self._charted, self.size)
        if key == self._chart_key and moment - self._chart_at < self.CHART_INTERVAL:
            return
        self._chart_at, self._chart_key = moment, key
        points = self.points(state)
        values = [p.balance for p in points]
        times = [p.datetime for p in points]
        if state.account is not None:
            values.append(state.account.balance)  # the live point
            times.append(account_now(state))
        title = self.query_one("#equity-title", Static)
        if not self._charted:
            line = Text(f"{self.range.name} ", style="bold cyan")
            line.append(sparkline(values, max(0, self.size.width - line.cell_len)), style="cyan")
            title.update(line)
            return
        title.update(self.title(state))
        chart = self.query_one("#equity-chart", PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        plt.frame(False)  # every line for the curve
        width = max(8, chart.size.width - 10)  # the plot area, without the y labels
        if len(values) >= 2:
            # the chart has ``width`` cells of two braille dots each: more points are noise
            index = resample(list(range(len(values))), 2 * width)
            xs = list(range(len(index)))
            ys = [values[i] for i in index]
            plt.plot(xs, ys, marker="braille")
            ticks = max(2, min(5, width // 10))
            step = max(1, (len(xs) - 1) // (ticks - 1))
            at = xs[::step]
            stamps = [times[index[x]].strftime(self.range.tick_format) for x in at]
            # a label only where the time moves on (a young curve would read 22:24 22:24 22:24)
            labels = [t if n == 0 or t != stamps[n - 1] else "" for n, t in enumerate(stamps)]
            labels[-1] = "now" if at[-1] == xs[-1] and state.account is not None else labels[-1]
            plt.xticks(at, labels)
            # our own range and labels: plotext's for a near-flat curve are far off the values
            lo, hi = min(ys), max(ys)
            pad = max((hi - lo) * 0.1, abs(hi) * 0.0005, 1.0)
            plt.ylim(lo - pad, hi + pad)
            marks = [lo, hi] if hi - lo > pad else [ys[-1]]  # the range; flat: the one value
            plt.yticks(marks, [f"{v:,.0f}" for v in marks])
        chart.refresh()
