"""Throw-away environments for benchmarks: temp data and socket directories and a config."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config import AppConfig, load_config_file


@dataclass
class BenchEnv:
    root: Path
    data_dir: Path
    config_path: Path

    def write(self, accounts_yaml: str, *, manager: str = "{}") -> AppConfig:
        self.config_path.write_text(
            f"manager: {manager}\n"
            f"socket: {{socket_dir: {self.root / 's'}}}\n"
            f"database: {{data_dir: {self.data_dir}}}\n"
            f"log: {{level: WARNING}}\n"
            f"accounts:\n{accounts_yaml}"
        )
        return load_config_file(self.config_path)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def make_env() -> BenchEnv:
    root = Path(tempfile.mkdtemp(prefix="qtb-"))  # short: Unix socket paths are limited
    return BenchEnv(root=root, data_dir=root / "data", config_path=root / "config.yaml")


def sim_account(
    account_id: str, watchlist: list[str], *, rate: float = 2.0, seed: int = 1, **risk: int
) -> str:
    risk_yaml = f"\n    risk: {{{', '.join(f'{k}: {v}' for k, v in risk.items())}}}" if risk else ""
    return (
        f"  - account_id: {account_id}\n"
        f"    gateway: sim\n"
        f"    sim: {{initial_balance: 100000000, seed: {seed}, tick_rate: {rate}}}\n"
        f"    watchlist: [{', '.join(watchlist)}]{risk_yaml}\n"
    )


async def wait_until(predicate: Callable[[], object], timeout: float = 60.0) -> float:
    """Seconds until ``predicate`` held (polled every millisecond)."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.001)
    return time.perf_counter() - start
