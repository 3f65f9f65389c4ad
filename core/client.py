"""ConsoleClient: the only door from the console into the trading core.

The console never touches a socket, a trader or a database: it reads
``AccountState``s, subscribes to ``Change``s and sends commands, each of which
returns exactly one ``Reply`` (``ok``, a readable ``error``, a ``result``).
``LocalConsoleClient`` drives an in-process ``TradingManager``; a remote
client speaking the control protocol to a daemon implements the same class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from core.aggregator import AccountState, Change
from core.manager import TradingManager
from core.models import Direction, OrderRequest, TradingState
from core.protocol import HistoryKind, Reply, StrategyCommand


class ConsoleClient(ABC):
    """What the console may see and do."""

    # ------------------------------------------------------------------ reading

    @property
    @abstractmethod
    def account_ids(self) -> list[str]:
        """Configured accounts, in configuration order."""

    @abstractmethod
    def state(self, account_id: str) -> AccountState:
        """Live state of one account (do not mutate)."""

    @abstractmethod
    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback`` on every change; returns the unsubscribe function."""

    @abstractmethod
    async def history(
        self,
        account_id: str,
        kind: HistoryKind,
        *,
        since: float | None = None,
        limit: int = 1000,
        vt_symbol: str | None = None,
    ) -> Reply:
        """Stored rows from the account's database (orders, trades, account_snapshots, ...)."""

    # ------------------------------------------------------------------ trading

    @abstractmethod
    async def send_order(self, account_id: str, req: OrderRequest) -> Reply:
        """Risk-check and send; ``result["order_id"]`` is set whether accepted or refused."""

    @abstractmethod
    async def cancel_order(self, account_id: str, order_id: str) -> Reply: ...

    @abstractmethod
    async def cancel_all(self, account_id: str, vt_symbol: str | None = None) -> Reply: ...

    @abstractmethod
    async def close_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        price: float | None = None,
    ) -> Reply:
        """Close (part of) a position; the trader picks offsets (SHFE today/yesterday)."""

    @abstractmethod
    async def set_trading_state(self, account_id: str, state: TradingState) -> Reply: ...

    @abstractmethod
    async def strategy_command(self, account_id: str, command: StrategyCommand) -> Reply: ...

    @abstractmethod
    async def kill_switch(self, account_id: str | None = None) -> dict[str, Reply]:
        """HALT + stop strategies + cancel all working orders; one account or all (None)."""

    @abstractmethod
    async def status(self, account_id: str) -> Reply:
        """Ask the trader itself (``result`` is a TraderInfo)."""

    # ------------------------------------------------------------------ processes

    @abstractmethod
    async def start_trader(self, account_id: str) -> Reply: ...

    @abstractmethod
    async def stop_trader(self, account_id: str) -> Reply: ...

    @abstractmethod
    async def restart_trader(self, account_id: str) -> Reply: ...


class LocalConsoleClient(ConsoleClient):
    """ConsoleClient over a TradingManager running in this process."""

    def __init__(self, manager: TradingManager) -> None:
        self.manager = manager

    @property
    def account_ids(self) -> list[str]:
        return self.manager.account_ids

    def state(self, account_id: str) -> AccountState:
        return self.manager.state(account_id)

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        return self.manager.aggregator.subscribe(callback)

    async def history(
        self,
        account_id: str,
        kind: HistoryKind,
        *,
        since: float | None = None,
        limit: int = 1000,
        vt_symbol: str | None = None,
    ) -> Reply:
        return await self.manager.history(account_id, kind, since=since, limit=limit, vt_symbol=vt_symbol)

    async def send_order(self, account_id: str, req: OrderRequest) -> Reply:
        return await self.manager.send_order(account_id, req)

    async def cancel_order(self, account_id: str, order_id: str) -> Reply:
        return await self.manager.cancel_order(account_id, order_id)

    async def cancel_all(self, account_id: str, vt_symbol: str | None = None) -> Reply:
        return await self.manager.cancel_all(account_id, vt_symbol)

    async def close_position(
        self,
        account_id: str,
        vt_symbol: str,
        direction: Direction,
        *,
        volume: float | None = None,
        price: float | None = None,
    ) -> Reply:
        return await self.manager.close_position(account_id, vt_symbol, direction, volume=volume, price=price)

    async def set_trading_state(self, account_id: str, state: TradingState) -> Reply:
        return await self.manager.set_trading_state(account_id, state)

    async def strategy_command(self, account_id: str, command: StrategyCommand) -> Reply:
        return await self.manager.strategy_command(account_id, command)

    async def kill_switch(self, account_id: str | None = None) -> dict[str, Reply]:
        return await self.manager.kill_switch(account_id)

    async def status(self, account_id: str) -> Reply:
        return await self.manager.status(account_id)

    async def start_trader(self, account_id: str) -> Reply:
        return await self.manager.start_trader(account_id)

    async def stop_trader(self, account_id: str) -> Reply:
        return await self.manager.stop_trader(account_id)

    async def restart_trader(self, account_id: str) -> Reply:
        return await self.manager.restart_trader(account_id)
