"""Memory: resident set of one trader process with three bar strategies (vnpy's bar tools
and TA-Lib loaded), next to one without strategies, both sim accounts ticking at 2/s.

Each trader runs as in production (its own process, started by the manager); the figure
is taken 3 s after every strategy reports running (``psutil``: RSS, and USS, the memory
no other process shares).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psutil

from bench.harness import make_env, sim_account, wait_until
from bench.report import print_json, print_table
from core.manager import TradingManager
from core.models import TraderStatus

STRATEGIES = (
    "    strategies:\n"
    "      - {name: au_ma_rsi, class: MaRsiStrategy, symbol: au2612.SHFE}\n"
    "      - {name: rb_ma_cross, class: MaCrossStrategy, symbol: rb2705.SHFE}\n"
    "      - {name: m_rsi, class: RsiStrategy, symbol: m2705.DCE}\n"
)
WATCHLIST = ["au2612.SHFE", "rb2705.SHFE", "m2705.DCE"]
TARGET_MB = 100


async def _measure() -> dict[str, float]:
    env = make_env()
    config = env.write(sim_account("BARS", WATCHLIST) + STRATEGIES + sim_account("PLAIN", WATCHLIST, seed=2))
    mgr = TradingManager(config, config_path=env.config_path, data_dir=env.data_dir)
    await mgr.start()
    try:
        bars, plain = mgr.state("BARS"), mgr.state("PLAIN")
        await wait_until(
            lambda: (
                bars.status is TraderStatus.CONNECTED
                and plain.status is TraderStatus.CONNECTED
                and len(bars.strategies) == 3
                and all(s.running for s in bars.strategies.values())
            )
        )
        await asyncio.sleep(3.0)  # start-up work settles
        figures: dict[str, float] = {}
        for name, state in (("strategies", bars), ("plain", plain)):
            info = psutil.Process(state.pid or 0).memory_full_info()
            figures[f"{name}_rss_mb"] = round(info.rss / 2**20, 1)
            figures[f"{name}_uss_mb"] = round(info.uss / 2**20, 1)
        return figures
    finally:
        await mgr.stop()
        env.cleanup()


def run(*, quick: bool = False) -> dict[str, Any]:
    figures = asyncio.run(_measure())
    print_table(
        "memory: one trader process, sim account ticking 3 contracts at 2/s",
        ["trader", "RSS MB", "USS MB", "target RSS"],
        [
            (
                "3 bar strategies (MaRsi, MaCross, Rsi: vnpy, TA-Lib)",
                figures["strategies_rss_mb"],
                figures["strategies_uss_mb"],
                f"<= {TARGET_MB} MB",
            ),
            ("no strategies", figures["plain_rss_mb"], figures["plain_uss_mb"], "-"),
        ],
    )
    figures["target_rss_mb"] = TARGET_MB
    print_json("memory", figures)
    return figures
