"""The console freezes its heap once the accounts' snapshots are in, and gives it back when it
unmounts: full collections then walk only what came after start-up (see ``tui/app.py``)."""

from __future__ import annotations

import gc

import pytest

from tests.conftest import wait_until
from tests.fake_client import FakeClient, _dq2
from tui import app as app_module
from tui.app import QTraderApp


async def test_the_heap_is_frozen_after_the_last_snapshot_and_unfrozen_on_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "HEAP_SETTLE", 0.2)
    gc.unfreeze()
    client = FakeClient()
    app = QTraderApp(client)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert app.heap_freezes == 0  # no snapshot since it subscribed: nothing settled yet
        client.apply("DQ2", "snapshot", _dq2()[0])  # a trader (re)connected: its whole state
        await wait_until(lambda: app.heap_freezes == 1, timeout=10, what="the heap frozen")
        assert gc.get_freeze_count() > 0
        client.apply("DQ2", "snapshot", _dq2()[0])
        client.apply("DQ2", "snapshot", _dq2()[0])  # a burst of snapshots: frozen once, after it
        await wait_until(lambda: app.heap_freezes == 2, timeout=10, what="the heap frozen again")
        await pilot.pause(0.3)
        assert app.heap_freezes == 2
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0  # unmounted: everything back to the collector
