"""What ``qtrader-tui --replay`` prints: the trades, the daily P&L and a summary as tables, then,
as the last line, one JSON object ``{"trades": [[datetime, direction, offset, price, volume],
...], "net_pnl": ..., "trade_count": ...}`` (README.md, "Replay")."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from strategies.cta_replay import CtaReplay

__all__ = ["print_report", "result_json"]


def _when(value: Any) -> str:
    return value.isoformat(sep=" ")


def result_json(replay: CtaReplay) -> dict[str, Any]:
    """The run as the last line carries it."""
    return {
        "trades": [
            [_when(t.datetime), t.direction.name, t.offset.name, float(t.price), float(t.volume)]
            for t in replay.trades
        ],
        "net_pnl": replay.net_pnl,
        "trade_count": len(replay.trades),
    }


def print_report(replay: CtaReplay, out: TextIO) -> None:
    console = Console(file=out, width=max(100, Console(file=out).width), highlight=False)
    out.flush()
    name = type(replay.host).class_name
    # the trades as plain aligned lines: a rich table of tens of thousands of rows takes seconds
    console.print(f"[bold]{name} on {replay.vt_symbol}: {len(replay.trades)} trades[/bold]")
    rows = [
        (_when(t.datetime), t.direction.name, t.offset.name, f"{t.price:g}", f"{t.volume:g}")
        for t in replay.trades
    ]
    header = ("time", "direction", "offset", "price", "volume")
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    left = (True, True, True, False, False)

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if lj else c.rjust(w) for c, w, lj in zip(cells, widths, left, strict=True)
        )

    out.write("\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)]) + "\n")

    daily = Table(title="daily P&L", title_justify="left")
    for column in ("date", "close", "trades", "end pos", "commission", "slippage", "total P&L", "net P&L"):
        daily.add_column(column, justify="left" if column == "date" else "right")
    for r in replay.daily.values():
        daily.add_row(
            r.date.isoformat(),
            f"{r.close_price:g}",
            str(len(r.trades)),
            f"{r.end_pos:g}",
            f"{r.commission:,.2f}",
            f"{r.slippage:,.2f}",
            f"{r.total_pnl:+,.2f}",
            f"{r.net_pnl:+,.2f}",
        )
    console.print(daily)

    summary = Table(title="summary", title_justify="left", show_header=False)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    for key, value in replay.summary().items():
        text = f"{value:,.2f}" if isinstance(value, float) else str(value)
        summary.add_row(key.replace("_", " "), text)
    console.print(summary)
    out.write(json.dumps(result_json(replay)) + "\n")
    out.flush()
