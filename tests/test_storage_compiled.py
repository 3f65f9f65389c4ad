"""The account database's statements, compiled once from the table classes and kept
(storage.database: ``_compile``, ``compiled_cache_path``)."""

from __future__ import annotations

import json
import subprocess
import sys

from storage import database

PROBE = """
import sys
from datetime import datetime
from pathlib import Path
from core.models import CHINA_TZ, Direction, Offset, Order, OrderType, Status
from storage import AccountDatabase
db = AccountDatabase(Path(sys.argv[1]) / "trading_X.db")
order = Order(account_id="X", order_id="O1", vt_symbol="au2612.SHFE", direction=Direction.LONG,
              offset=Offset.OPEN, type=OrderType.LIMIT, price=912.0, volume=1,
              status=Status.NOTTRADED, datetime=datetime(2026, 12, 1, 9, 0, tzinfo=CHINA_TZ))
db.save_order(order)
assert db.load_orders(active_only=True) == [order], db.load_orders()
db.close()
print(sorted(m for m in ("sqlalchemy", "sqlmodel") if m in sys.modules))
"""


def test_the_kept_statements_are_what_the_tables_compile_to_now() -> None:
    kept = database._COMPILED  # what this process loaded (from the file, or compiled and kept)
    assert kept["key"] == database.compiled_cache_path().stem
    fresh = json.loads(json.dumps(database._compile()))
    assert {k: v for k, v in kept.items() if k != "key"} == fresh


def test_a_trader_with_the_statements_kept_imports_no_sqlalchemy(tmp_path) -> None:
    database.compiled_cache_path()  # kept by this process's import of storage
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_damaged_cache_is_compiled_afresh(tmp_path) -> None:
    path = database.compiled_cache_path()
    kept = path.read_text()
    try:
        path.write_text(kept[: len(kept) // 2])  # cut short, as by a full disk
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "['sqlalchemy', 'sqlmodel']"  # compiled from the tables
        assert json.loads(path.read_text()) == json.loads(kept)  # and kept whole again
    finally:
        path.write_text(kept)
