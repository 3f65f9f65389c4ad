"""The account's watchlist edited from a console (issue 10, point 4): real trader processes on
the sim exchange; the list is saved in the account's state, restored after the trader is killed,
its subscriptions follow at once, through the manager and through the control socket."""

from __future__ import annotations

import os
import signal

from config import paths as cfg_paths
from core.client import LocalConsoleClient, RemoteConsoleClient
from core.control import ControlServer
from core.manager import TradingManager
from core.models import TraderStatus
from core.watchlist import WATCHLIST_FILE, load_watchlist
from tests.conftest import CoreEnv, sim_account, wait_until

CONFIGURED = ["au2612.SHFE", "rb2705.SHFE"]


def _connected(mgr: TradingManager, account_id: str = "W1") -> bool:
    state = mgr.state(account_id)
    return state.status is TraderStatus.CONNECTED and state.watchlist is not None and bool(state.ticks)


async def test_a_watchlist_set_from_the_console_is_saved_subscribed_and_restored(core_env: CoreEnv) -> None:
    config = core_env.write_config(sim_account("W1", ", ".join(CONFIGURED), seed=3, rate=2.0))
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    client = LocalConsoleClient(mgr)
    await mgr.start()
    try:
        await wait_until(lambda: _connected(mgr), what="W1 connected with its watchlist")
        state = mgr.state("W1")
        assert state.watchlist == CONFIGURED, "the configuration's, until the operator edits it"

        # listed: twelve months of rb from the exchange's month, for completion
        listed = await client.listed_contracts("W1", "rb")
        assert len(listed) == 12 and "rb2705.SHFE" in listed

        # set: a new contract first, the old ones reordered; quoted at once
        wanted = ["rb2710.SHFE", "rb2705.SHFE", "au2612.SHFE"]
        reply = await client.set_watchlist("W1", wanted)
        assert reply.ok, reply.error
        assert reply.result == {"watchlist": wanted, "subscribed": ["rb2710.SHFE"]}
        await wait_until(lambda: state.watchlist == wanted, what="the new watchlist in the state")
        await wait_until(lambda: "rb2710.SHFE" in state.ticks, what="the new contract quoted")
        state_dir = cfg_paths.account_state_dir(core_env.data_dir, "W1")
        assert load_watchlist(state_dir) == wanted, "saved before the reply"

        # a contract the venue does not know: refused with its name, nothing changes
        reply = await client.set_watchlist("W1", [*wanted, "cu2799.SHFE"])
        assert not reply.ok and "cu2799.SHFE" in reply.error and "unchanged" in reply.error
        assert load_watchlist(state_dir) == wanted and state.watchlist == wanted

        # the trader killed: its successor lists the saved watchlist, not the configuration's
        old_pid = mgr.proxies["W1"].pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        await wait_until(
            lambda: mgr.proxies["W1"].pid not in (None, old_pid) and _connected(mgr),
            timeout=30,
            what="W1 restarted",
        )
        await wait_until(lambda: mgr.state("W1").watchlist == wanted, what="the saved watchlist restored")
        await wait_until(lambda: "rb2710.SHFE" in mgr.state("W1").ticks, what="subscribed again")

        # the main contract of rb: the listed month with the largest open interest
        reply = await client.main_contract("W1", "rb")
        assert reply.ok, reply.error
        interest = reply.result["open_interest"]
        assert set(interest) | set(reply.result["unquoted"]) == set(listed)
        assert reply.result["unquoted"] == [], "the sim quotes every month it is asked for at once"
        assert reply.result["main"] == max(sorted(interest), key=lambda s: interest[s])
        ticks = mgr.state("W1").ticks
        assert all(interest[s] == ticks[s].open_interest for s in interest)
        assert mgr.state("W1").watchlist == wanted, "a lookup does not change the watchlist"

        reply = await client.main_contract("W1", "zz")
        assert not reply.ok and "lists no zz futures" in reply.error

        # the same through the control socket: an attached console edits it too
        path = cfg_paths.control_socket_path(mgr.sock_dir)
        control = ControlServer(mgr, path)
        await control.start()
        remote = RemoteConsoleClient(path, [("W1", "sim")])
        try:
            await remote.connect()
            await wait_until(
                lambda: remote.state("W1").watchlist == wanted, what="the attached console's copy"
            )
            reply = await remote.set_watchlist("W1", ["au2612.SHFE"])
            assert reply.ok, reply.error
            await wait_until(lambda: remote.state("W1").watchlist == ["au2612.SHFE"], what="streamed back")
            assert mgr.state("W1").watchlist == ["au2612.SHFE"]
            assert load_watchlist(state_dir) == ["au2612.SHFE"]
        finally:
            await remote.close()
            await control.stop()
    finally:
        await mgr.stop()


async def test_an_unreadable_saved_watchlist_falls_back_to_the_configurations(core_env: CoreEnv) -> None:
    config = core_env.write_config(sim_account("W1", ", ".join(CONFIGURED), seed=3, rate=0, mode="embedded"))
    state_dir = cfg_paths.account_state_dir(core_env.data_dir, "W1")
    state_dir.mkdir(parents=True)
    (state_dir / WATCHLIST_FILE).write_text("{broken")
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        await wait_until(lambda: _connected(mgr), what="W1 connected")
        assert mgr.state("W1").watchlist == CONFIGURED
    finally:
        await mgr.stop()


def test_a_watchlist_request_is_bounded_where_it_is_decoded() -> None:
    import msgspec
    import pytest

    from core.protocol import MAX_WATCHLIST, SchemaError, decode_payload

    def frame(data: object) -> bytes:
        return msgspec.json.encode({"type": "watchlist_req", "req_id": 7, "data": data})

    with pytest.raises(SchemaError, match=r"\$\.symbols"):
        decode_payload(frame({"action": "set", "symbols": ["m2705.DCE"] * (MAX_WATCHLIST + 1)}))
    with pytest.raises(SchemaError, match=r"\$\.product"):
        decode_payload(frame({"action": "probe", "product": "rb; DROP"}))
    with pytest.raises(SchemaError, match=r"\$\.symbols\[0\]"):
        decode_payload(frame({"action": "set", "symbols": ["not a symbol"]}))
    ok = decode_payload(frame({"action": "set", "symbols": ["m2705.DCE"]}))
    assert ok.data.symbols == ["m2705.DCE"]


async def test_a_paper_accounts_edited_watchlist_is_quoted_by_its_source(core_env: CoreEnv) -> None:
    config = core_env.write_config(
        sim_account("SRC", "m2705.DCE", seed=7, rate=2.0)
        + """
  - account_id: PAPER
    gateway: sim
    market_data_from: SRC
    sim: {initial_balance: 500000}
    watchlist: [m2705.DCE]
"""
    )
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    client = LocalConsoleClient(mgr)
    await mgr.start()
    try:
        paper = mgr.state("PAPER")
        await wait_until(lambda: paper.status is TraderStatus.CONNECTED and "m2705.DCE" in paper.ticks)
        reply = await client.set_watchlist("PAPER", ["m2705.DCE", "y2705.DCE"])
        assert reply.ok, reply.error
        # the source is asked for it, and its real quotes reach the paper account
        await wait_until(lambda: "y2705.DCE" in mgr.state("SRC").ticks, what="the source quotes y2705")
        await wait_until(lambda: "y2705.DCE" in paper.ticks, what="relayed to the paper account")
    finally:
        await mgr.stop()


def test_a_saved_watchlist_is_held_to_the_wires_bounds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A watchlist.json edited by hand or damaged is refused as the wire would refuse it (a
    symbol that is none, a line break that would forge log lines, thousands of rows), so the
    trader falls back to the configuration's instead of subscribing and logging it."""
    import msgspec
    import pytest

    from core.protocol import MAX_WATCHLIST

    path = tmp_path / WATCHLIST_FILE
    for symbols in (["rb2705.SHFE\nERROR forged line"], ["x" * 5000], ["m2705.DCE"] * (MAX_WATCHLIST + 1)):
        path.write_bytes(msgspec.json.encode({"symbols": symbols}))
        with pytest.raises(msgspec.ValidationError):
            load_watchlist(tmp_path)
    path.write_bytes(msgspec.json.encode({"symbols": ["m2705.DCE"]}))
    assert load_watchlist(tmp_path) == ["m2705.DCE"]
