"""Finding strategy classes: built-ins, user files in a directory, a dotted module, and errors that
say which class was looked for and where; importing the package does not import vnpy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from config.schema import StrategyRiskConfig
from strategies import BUILTINS, GridStrategy, MaRsiStrategy, Strategy, StrategyError, load_strategy_class
from tests.test_strategies import FakeContext, feed

ROOT = Path(__file__).resolve().parents[1]

USER_STRATEGY = '''
from strategies import Param, Strategy
from {helper} import THRESHOLD


class {name}(Strategy):
    """A user's own strategy."""

    parameters = {{"lookback": Param(20, int, min=2, help="bars")}}

    def bars_needed(self) -> int:
        return 0

    def on_tick(self, tick) -> None:
        super().on_tick(tick)
        if tick.last_price > THRESHOLD:
            self.hold(tick.last_price, f"price {{tick.last_price}} above {{THRESHOLD}}")
'''


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader puts a user directory on sys.path; undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def _user_dir(tmp_path: Path, name: str, helper: str) -> Path:
    folder = tmp_path / "user_strategies"
    folder.mkdir()
    (folder / f"{helper}.py").write_text("THRESHOLD = 100.0\n")
    (folder / "mine.py").write_text(USER_STRATEGY.format(name=name, helper=helper))
    (folder / "notes.py").write_text("raise RuntimeError('never imported: it does not define the class')\n")
    return folder


def test_builtins_by_class_name() -> None:
    assert list(BUILTINS) == [
        "MaCrossStrategy",
        "RsiStrategy",
        "MaRsiStrategy",
        "StopGuardStrategy",
        "GridStrategy",
    ]
    assert load_strategy_class("MaRsiStrategy") is MaRsiStrategy
    assert load_strategy_class("GridStrategy", search_path=None) is GridStrategy


def test_user_strategy_from_a_directory_runs_with_its_helper_module(tmp_path: Path) -> None:
    folder = _user_dir(tmp_path, "BreakoutStrategy", "breakout_helper_a")
    cls = load_strategy_class("BreakoutStrategy", str(folder))
    assert issubclass(cls, Strategy) and cls.class_name == "BreakoutStrategy"
    assert load_strategy_class("BreakoutStrategy", str(folder)) is cls  # imported once
    ctx = FakeContext()
    strategy = cls(ctx, "mine", "rb2601.SHFE", {"lookback": 5}, StrategyRiskConfig())
    strategy.on_start()
    feed(strategy, [99.0, 101.0])
    assert [s.condition for s in ctx.signals] == ["price 101.0 above 100.0"]
    # built-ins are still found with a user path configured
    assert load_strategy_class("GridStrategy", str(folder)) is GridStrategy


def test_missing_class_names_the_class_and_where_it_looked(tmp_path: Path) -> None:
    folder = _user_dir(tmp_path, "BreakoutStrategy", "breakout_helper_b")
    with pytest.raises(StrategyError) as info:
        load_strategy_class("TurtleStrategy", str(folder))
    assert str(info.value) == (
        "strategy class 'TurtleStrategy' not found in built-ins (MaCrossStrategy, RsiStrategy, "
        f"MaRsiStrategy, StopGuardStrategy, GridStrategy) and {folder}; no file in {folder} defines it "
        "(breakout_helper_b.py, mine.py, notes.py)"
    )
    with pytest.raises(
        StrategyError, match=r"^strategy class 'TurtleStrategy' not found in built-ins \(.*\)$"
    ):
        load_strategy_class("TurtleStrategy")
    with pytest.raises(StrategyError, match=r"/no/such/dir is not a directory"):
        load_strategy_class("TurtleStrategy", "/no/such/dir")


def test_a_user_file_that_fails_to_import_is_named_with_its_error(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("class BrokenStrategy(Strategy):\n    pass\n")  # Strategy undefined
    with pytest.raises(StrategyError) as info:
        load_strategy_class("BrokenStrategy", str(tmp_path))
    assert f"{tmp_path / 'broken.py'} failed to import: NameError: name 'Strategy' is not defined" in str(
        info.value
    )


def test_a_class_that_is_not_a_strategy_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("class PlainStrategy:\n    pass\n")
    with pytest.raises(
        StrategyError, match=r"'PlainStrategy' in .*plain\.py is not a subclass of strategies\.Strategy"
    ):
        load_strategy_class("PlainStrategy", str(tmp_path))


def test_a_user_class_wins_over_a_builtin_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / "my_grid.py").write_text(
        "from strategies import GridStrategy as _Grid\n\n\nclass GridStrategy(_Grid):\n    pass\n"
    )
    cls = load_strategy_class("GridStrategy", str(tmp_path))
    assert cls is not GridStrategy and issubclass(cls, GridStrategy)


def test_user_strategy_from_a_dotted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "qt_user_pkg_x"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "breakout_helper_c.py").write_text("THRESHOLD = 100.0\n")
    (package / "strats.py").write_text(
        USER_STRATEGY.format(name="DottedStrategy", helper="qt_user_pkg_x.breakout_helper_c")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = load_strategy_class("DottedStrategy", "qt_user_pkg_x.strats")
    assert cls.__module__ == "qt_user_pkg_x.strats"
    with pytest.raises(StrategyError, match=r"module 'qt_user_pkg_x\.strats' has no 'OtherStrategy'"):
        load_strategy_class("OtherStrategy", "qt_user_pkg_x.strats")
    with pytest.raises(
        StrategyError, match=r"module 'qt_user_pkg_x\.nope' failed to import: ModuleNotFoundError"
    ):
        load_strategy_class("OtherStrategy", "qt_user_pkg_x.nope")


def test_importing_strategies_and_tick_strategies_do_not_import_vnpy(tmp_path: Path) -> None:
    (tmp_path / ".vntrader").mkdir()
    code = textwrap.dedent(
        """
        import sys
        from config.schema import StrategyRiskConfig
        from tests.test_strategies import FakeContext, feed
        import strategies

        assert "vnpy" not in sys.modules
        for cls in (strategies.GridStrategy, strategies.StopGuardStrategy):
            cls(FakeContext(), "s", "rb2601.SHFE", {}, StrategyRiskConfig())
        assert "vnpy" not in sys.modules and "numpy" not in sys.modules
        strategies.MaCrossStrategy(FakeContext(), "m", "rb2601.SHFE", {}, StrategyRiskConfig())
        assert "vnpy.trader.utility" in sys.modules
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
