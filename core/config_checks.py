"""Checks of a loaded configuration that config/ cannot make on its own, run by the entry points
(``qtrader-tui``, ``--no-ui``, ``--attach``) before anything starts.

config/ validates the file's shape and imports nothing of ours (ARCHITECTURE.md, "Layers"); what
needs another layer or today's date is checked here, and reported the loader's way (a
``ConfigError`` naming the file and the field, ARCHITECTURE.md, "Invariants" 3):

- a contract month that is over (in exchange time): it trades no more, its quotes never come;
- a symbol the simulated exchange does not list, on a sim account (``gateways.sim_contracts``);
- a strategy class that cannot be found, or parameters its class refuses (``strategies``);
- a sim account's replay file that cannot be read or used (``gateways/sim_replay.py``: the line
  and the column), or whose contract is unknown (its month may be over: history is replayed).

Not in the loader because a trader process loads the same file again at each (re)start: a trader
restarted on the first day of a month must not refuse the file its manager accepted, and a
strategy that fails to load must stop only its own instance (the engine reports it) once trading
runs.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from datetime import date

from config import ConfigError, LoadedConfig, SimSettings, StrategyConfig
from config.symbols import contract_month, month_expired
from core.models import now, split_vt_symbol

__all__ = ["StartupCheck", "check_startup"]


def check_startup(loaded: LoadedConfig, *, today: date | None = None) -> None:
    """Raise ``ConfigError`` (``<file>: <field>: <reason>``) for the first problem found."""
    config = loaded.config
    day = today or now().date()  # exchange time (core.models.now is China time)
    name = loaded.source.name
    for i, account in enumerate(config.accounts):
        replayed = (
            _check_replay(name, i, account.sim, account.market_data_from) if account.gateway == "sim" else ""
        )
        symbols = [(f"accounts[{i}].watchlist[{j}]", s) for j, s in enumerate(account.watchlist)]
        symbols += [
            (f"accounts[{i}].strategies[{j}].symbol", s.symbol) for j, s in enumerate(account.strategies)
        ]
        for field, vt_symbol in symbols:
            if vt_symbol == replayed:
                continue  # checked with the file: a month long over is what history has
            problem = _symbol_problem(vt_symbol, day, sim=account.gateway == "sim")
            if problem is not None:
                raise ConfigError(f"{name}: {field}: {problem}", source=name, field=field)
        for j, strategy in enumerate(account.strategies):
            _check_strategy(name, f"accounts[{i}].strategies[{j}]", strategy, config.strategy_path)


class StartupCheck:
    """``check_startup`` run in a fork of this process while the caller goes on, so that the
    imports it needs (a vnpy strategy's module brings pandas and TA-Lib: about 0.25 s) run on
    another core while the console imports its own; ``result`` gives its verdict, raising the same
    ``ConfigError`` the call would have raised. Fork while single-threaded (an entry point, right
    after the configuration loaded): the child only imports, checks and reports, and leaves with
    ``os._exit``. A child that gives no verdict (it died, or the fork failed) is no verdict: the
    check then runs here, as it would have without a fork.
    """

    def __init__(self, loaded: LoadedConfig, *, today: date | None = None) -> None:
        self._loaded = loaded
        self._today = today
        self._pid: int | None = None
        self._reader = -1
        try:
            reader, writer = os.pipe()
        except OSError:
            return
        try:
            pid = os.fork()
        except OSError:
            os.close(reader)
            os.close(writer)
            return
        if pid == 0:  # the child: check, report, leave (never back into the caller's code)
            code = 1
            try:
                os.close(reader)
                try:
                    check_startup(loaded, today=today)
                    verdict: tuple[str, str | None, str | None] | None = None
                except ConfigError as exc:
                    verdict = (str(exc), exc.source, exc.field)
                with os.fdopen(writer, "wb") as out:
                    out.write(pickle.dumps(verdict))
                code = 0
            finally:
                os._exit(code)
        os.close(writer)
        self._pid, self._reader = pid, reader

    def result(self) -> None:
        """Wait for the verdict: return if the configuration passes, else raise its ``ConfigError``."""
        verdict = self._verdict()
        if verdict is _NO_VERDICT:
            check_startup(self._loaded, today=self._today)
        elif verdict is not None:
            message, source, field = verdict
            raise ConfigError(message, source=source, field=field)

    def _verdict(self) -> object:
        if self._pid is None:
            return _NO_VERDICT
        with os.fdopen(self._reader, "rb") as f:
            data = f.read()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        self._pid = None
        try:
            return pickle.loads(data) if data else _NO_VERDICT
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
            return _NO_VERDICT


_NO_VERDICT = object()


def _symbol_problem(vt_symbol: str, day: date, *, sim: bool) -> str | None:
    from gateways import sim_contracts  # here: the checks' imports are the fork's (StartupCheck)

    symbol, exchange = split_vt_symbol(vt_symbol)
    if month_expired(symbol, exchange.name, day):
        month = contract_month(symbol, exchange.name, day)
        assert month is not None
        return (
            f"'{vt_symbol}': the {month:%Y-%m} contract has expired (today is {day:%Y-%m-%d}, exchange "
            "time); move the month forward"
        )
    if sim and sim_contracts.get_product(vt_symbol) is None:  # a paper account's too: it matches locally
        return f"{sim_contracts.unknown_reason(vt_symbol)} (this account's gateway is sim)"
    return None


def _check_strategy(name: str, where: str, strategy: StrategyConfig, search_path: str | None) -> None:
    from strategies import StrategyError, load_strategy_class

    try:
        cls = load_strategy_class(strategy.class_name, search_path)
    except StrategyError as exc:
        field = f"{where}.class"
        raise ConfigError(f"{name}: {field}: {exc}", source=name, field=field) from None
    try:
        cls.check_params(strategy.name, strategy.params)
    except StrategyError as exc:
        field = f"{where}.{strategy.params_key}" + (f".{exc.param}" if exc.param else "")
        raise ConfigError(f"{name}: {field}: {exc}", source=name, field=field) from None


def _check_replay(name: str, i: int, sim: SimSettings, quotes_from: str | None) -> str:
    """The contract a sim account's replay drives ("" without one), its file read and checked."""
    if sim.replay is None:
        return ""
    from gateways import sim_contracts
    from gateways.sim_replay import ReplayFileError, file_symbol, read_replay

    field = f"accounts[{i}].sim.replay"
    if quotes_from is not None:
        detail = (
            f"a paper account's market is {quotes_from}'s quotes: a replay drives a sim account's own market"
        )
        raise ConfigError(f"{name}: {field}: {detail}", source=name, field=field)
    symbol = sim.replay_symbol or file_symbol(sim.replay)
    if not symbol:
        detail = f"{sim.replay}: no symbol and exchange columns to say which contract it drives: set sim.replay_symbol"
        raise ConfigError(f"{name}: {field}: {detail}", source=name, field=field)
    if sim_contracts.get_product(symbol) is None:
        field = f"accounts[{i}].sim.replay_symbol"
        detail = f"{sim_contracts.unknown_reason(symbol)} (the contract the replay drives)"
        raise ConfigError(f"{name}: {field}: {detail}", source=name, field=field)
    try:
        read_replay(sim.replay, symbol)
    except ReplayFileError as exc:
        raise ConfigError(f"{name}: {field}: {exc}", source=name, field=field) from None
    return symbol
