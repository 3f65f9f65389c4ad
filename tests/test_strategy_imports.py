"""TA-Lib is imported for strategies without pandas (strategies.base.import_talib)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from strategies.base import _vnpy, import_talib
import_talib()
assert "talib" in sys.modules and "pandas" not in sys.modules and "polars" not in sys.modules
_, _, utility = _vnpy()
am = utility.ArrayManager(size=10)
import numpy as np
for price in np.linspace(100.0, 110.0, 10):
    bar = type("B", (), {"open_price": price, "high_price": price, "low_price": price,
                          "close_price": price, "volume": 1, "turnover": 0, "open_interest": 0})()
    am.update_bar(bar)
assert abs(am.sma(5) - 107.778) < 0.01, am.sma(5)  # TA-Lib computes, on numpy arrays
assert "pandas" not in sys.modules
import pandas  # kept out only while TA-Lib imported: a strategy may still use it
print("ok", pandas.__name__)
"""


def test_talib_and_vnpy_tools_load_without_pandas_and_pandas_still_imports() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok pandas"


def test_a_strategy_module_of_the_users_gets_talib_as_vnpy_gives_it_with_pandas(tmp_path) -> None:
    """A user's module (a vnpy CtaTemplate, run unchanged) may pass TA-Lib a pandas Series."""
    (tmp_path / "my_talib_strategy.py").write_text(
        "import numpy as np\nimport pandas as pd\nimport talib\n"
        "SMA = talib.SMA(pd.Series(np.arange(10.0)), 5)\n"
        "class MyStrategy:\n    pass\n"
    )
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from strategies.loader import _from_module_path\n"
        "try:\n"
        "    _from_module_path('my_talib_strategy:MyStrategy')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "import my_talib_strategy\n"
        "print(type(my_talib_strategy.SMA).__name__, my_talib_strategy.SMA.iloc[-1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["Series", "7.0"]
