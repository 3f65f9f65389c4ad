"""QTraderApp: the Textual console over a ConsoleClient.

Live data arrives as change notifications from the core; the app collects them
and redraws at a bounded rate: the first change after a quiet spell is flushed at
the end of its event-loop turn (all that turn brought, drawn once), and flushes
never come more often than ``MIN_FRAME``: what changes meanwhile waits for the next.
The header of every screen says which account the keys act on.

Once the accounts' state has come in (``HEAP_SETTLE`` after the last snapshot), the heap is
collected once and frozen (``gc.freeze``): what start-up built, the imports, the widgets and
the snapshots, lives as long as the console, and a full collection that walked it all (80 to
180 ms with the whole market, every few seconds, the event loop stopped meanwhile) now walks
only what came after. Unfrozen when the app unmounts, so nothing of it outlives the app.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from textual.app import App, SystemCommand
from textual.notifications import Notify
from textual.screen import ModalScreen, Screen
from textual.widget import Widget

from core.client import Change, ConsoleClient
from core.models import OUTCOME_UNKNOWN, TraderStatus, now
from core.protocol import Reply
from tui import format as fmt
from tui.actions import ACTIONS, bindings
from tui.alerts import Alerts, RiskDegreeWatch
from tui.dialogs.confirm import ConfirmDialog
from tui.draw import draw_now
from tui.screens.account import AccountScreen
from tui.screens.dashboard import DashboardScreen
from tui.volumes import VolumeMemory

# at most 200 flushes a second (a tick flood costs what a trickle does); a flush repaints
# only the rows in view that changed (~1-4 ms), so a change waits at most 5 ms for its flush
# (10 ms gave the whole market a p99 of 26 ms, 5 ms 17-18 ms at the same console CPU, 17 %). The first change after a quiet ``MIN_FRAME`` is
# flushed at the end of its event-loop turn (what came in that turn with it, drawn once);
# a change within ``MIN_FRAME`` of the last flush waits for the next, with all that came since.
MIN_FRAME = 0.005
HEAP_SETTLE = 1.0  # after the last snapshot: the long-lived heap is built, freeze it

LiveDirty = dict[str, set[str] | None]
_NAVIGATION = frozenset({"prev_account", "next_account", "account", "dashboard", "help", "quit"})


class QTraderApp(App[int]):
    """The console. ``start_core``/``stop_core`` run the in-process trading core, if any."""

    CSS_PATH = "app.tcss"
    TITLE = "qtrader-tui"
    BINDINGS = bindings("global")
    ENABLE_COMMAND_PALETTE = True
    MAX_TOASTS = 3  # notifications on screen at once (see notify)

    def __init__(
        self,
        client: ConsoleClient,
        *,
        scheme: str = "cn",
        keymap: dict[str, str] | None = None,
        start_core: Callable[[], Awaitable[None]] | None = None,
        stop_core: Callable[[], Awaitable[None]] | None = None,
        stop_message: str = "stopping the traders...",
        confirm_with_enter: bool = False,
        quit_stops_core: bool = False,
        bell: Iterable[str] = (),
        clock: Callable[[], datetime] = now,
        volumes: VolumeMemory | None = None,
        risk_degree_warning: float = 0.8,
    ) -> None:
        super().__init__()
        #: the order entry's proposed volume: last sent > ui.default_volume > 1
        self.volumes = volumes or VolumeMemory()
        #: ui.risk_degree_warning: margin / balance at or above it warns
        self.risk_degree_warning = risk_degree_warning
        self._risk_watch = RiskDegreeWatch(risk_degree_warning)
        #: exchange time (CST): the header's trading day; a test freezes it
        self.clock = clock
        #: the terminal bell for fills, rejections, accounts going down, the kill switch (ui.bell)
        self.alerts = Alerts(bell, lambda: self.bell())
        #: quitting stops the traders this console started: ask first
        self.quit_stops_core = quit_stops_core
        self.stop_message = stop_message
        #: the keys that send from a confirmation (ConfirmDialog reads them)
        self.confirm_keys: tuple[str, ...] = ("y", "enter") if confirm_with_enter else ("y",)
        self.client = client
        self.scheme = scheme
        self.keymap = dict(keymap or {})
        self._start_core = start_core
        self._stop_core = stop_core
        self.account_id = client.account_ids[0]
        self._dirty: dict[str, LiveDirty] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._settle_handle: asyncio.TimerHandle | None = None
        self.heap_freezes = 0  # times the heap was frozen (for tests)
        self._last_flush = 0.0
        self._unsubscribe: Callable[[], None] | None = None
        self._account_screen: AccountScreen | None = None
        self._dashboard: DashboardScreen | None = None
        self._quitting = False
        self._down: set[str] = set()  # accounts notified as down and not connected since
        self.frames = 0  # redraws done (for tests and the ui benchmark)
        self.on_frame: Callable[[], None] | None = None  # benchmark hook

    # ================================================================== lifecycle

    async def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        self._unsubscribe = self.client.subscribe(self._on_change)
        self._account_screen = AccountScreen(self.account_id)
        if self._start_core is not None:  # first: the traders start while the screen is built
            self.run_worker(self._start(), name="core-start", exclusive=True)
        await self.push_screen(self._account_screen)

    async def _start(self) -> None:
        assert self._start_core is not None
        try:
            await self._start_core()
        except Exception as exc:
            self.notify(
                f"the trading core failed to start: {exc}", severity="error", timeout=30, markup=False
            )

    async def action_quit(self) -> None:
        """``q`` / ctrl+q. A console that hosts the trading core asks first, naming what
        stops; an attached console detaches at once (its daemon trades on)."""
        if self._quitting:
            return
        if not self.quit_stops_core:
            await self._quit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._quit(), exclusive=True, group="quit")

        self.push_screen(
            ConfirmDialog("Quit and stop the trading core?", self._what_stops(), danger=True), answered
        )

    def _what_stops(self) -> list[tuple[str, str]]:
        states = [self.client.state(a) for a in self.client.account_ids]
        running = [s for s in states if s.status not in (TraderStatus.STOPPED, TraderStatus.CRASHED)]
        strategies = sum(1 for s in states for st in s.strategies.values() if st.running)
        working = sum(len(s.working_orders) for s in states)
        return [
            ("Stops", f"{len(running)} traders, {strategies} running strategies"),
            ("Stays", f"{working} working orders at the venue, with nothing watching them"),
            ("Instead", "to keep trading: qtrader-tui --no-ui, then qtrader-tui --attach"),
        ]

    async def _quit(self) -> None:
        if self._quitting:
            return
        self._quitting = True
        if self._stop_core is not None:
            self.notify(self.stop_message, timeout=10)
            await self._stop_core()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._cancel_flush()
        self.exit(0)

    def _cancel_flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._cancel_flush()
        if self._settle_handle is not None:
            self._settle_handle.cancel()
            self._settle_handle = None
        if self.heap_freezes:
            gc.unfreeze()  # what the app held goes back to the collector

    def _settle_later(self) -> None:
        """A snapshot came in: freeze the heap once they have stopped coming (see the top)."""
        if self._settle_handle is not None:
            self._settle_handle.cancel()
        self._settle_handle = asyncio.get_running_loop().call_later(HEAP_SETTLE, self._settle_heap)

    def _settle_heap(self) -> None:
        self._settle_handle = None
        gc.collect()  # nothing unreachable is frozen
        gc.freeze()
        self.heap_freezes += 1

    # ================================================================== live data

    def _on_change(self, change: Change) -> None:
        per_account = self._dirty.setdefault(change.account_id, {})
        if change.key is None or change.kind not in ("tick", "order", "position", "trade"):
            per_account[change.kind] = None
        else:
            keys = per_account.get(change.kind, set())
            if keys is not None:
                keys.add(change.key)
                per_account[change.kind] = keys
            elif change.kind not in per_account:
                per_account[change.kind] = {change.key}
        self._notify_change(change)
        self.alerts.on_change(change, self.client.state(change.account_id))
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            wait = self._last_flush + MIN_FRAME - time.monotonic()
            if wait > 0:  # a flush just ran: the next one, at most MIN_FRAME after it
                self._flush_handle = loop.call_later(wait, self._flush_changes)
            else:  # quiet until now: at once, after the rest of this turn's messages
                self._flush_handle = loop.call_soon(self._flush_changes)

    def _flush_changes(self) -> None:
        # not ``_flush``: that is Textual's own (captured stdout/stderr flushes call it)
        self._flush_handle = None
        self._last_flush = time.monotonic()
        dirty, self._dirty = self._dirty, {}
        if any("snapshot" in kinds for kinds in dirty.values()):
            self._settle_later()
        screen = self._live_screen()
        if isinstance(screen, AccountScreen):
            mine = dirty.get(screen.account_id)
            if mine:
                screen.refresh_live(mine)
        elif isinstance(screen, DashboardScreen) and dirty:
            screen.refresh_live(dirty)
        self.frames += 1
        if self.on_frame is not None:
            self.on_frame()
        # on the terminal now, not at Textual's next screen tick: the top screen (a dialog on
        # top shows its own quotes; the panels under it are Textual's to draw, as before)
        if self.screen_stack:
            top = self.screen_stack[-1]
            draw_now(top, top.walk_children(Widget))

    def _live_screen(self) -> Screen[Any] | None:
        """The top screen that shows live data (a dialog may be on top of it)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, AccountScreen | DashboardScreen):
                return screen
        return None

    def on_notify(self, event: Notify) -> None:
        """At most ``MAX_TOASTS`` notifications on screen: a burst (a cancel-all's replies, fills)
        would otherwise stack up over the panels and push the newest, the one that matters, off
        the bottom of the screen. What is dropped is the oldest; the panels keep the record."""
        others = [n for n in self._notifications if n is not event.notification]
        # the new one (added by Textual's own handler, before or after this one) takes the last place
        for old in others[: max(0, len(others) - (self.MAX_TOASTS - 1))]:
            self._unnotify(old)

    def _notify_change(self, change: Change) -> None:
        """The operator's fills and lost connections are worth an interruption, wherever the operator is."""
        state = self.client.state(change.account_id)
        if change.kind == "trade" and state.trades and state.trades[-1].reference == "manual":
            # the operator's own fills; strategy fills (many, in a busy account) are in the panels
            t = state.trades[-1]
            deal = fmt.deal(
                t.direction, t.offset, t.volume, t.vt_symbol, t.price, state.contracts.get(t.vt_symbol)
            )
            self.notify(f"{change.account_id} filled {deal}", markup=False)
        elif change.kind in ("account", "snapshot") and state.account is not None:
            degree = state.account.risk_degree
            if self._risk_watch.crossed(change.account_id, degree) and degree is not None:
                self.notify(
                    f"{change.account_id} risk degree {fmt.risk_degree_text(degree)} "
                    f"(margin {state.account.margin:,.2f} / balance {state.account.balance:,.2f}) "
                    f"is at or above {self.risk_degree_warning * 100:g}%",
                    severity="warning",
                    timeout=20,
                    markup=False,
                )
        elif change.kind == "status" and state.status is TraderStatus.CONNECTED:
            self._down.discard(change.account_id)
        elif change.kind == "status" and state.status in (TraderStatus.DISCONNECTED, TraderStatus.CRASHED):
            if change.account_id in self._down:
                return  # still down (a venue retrying every minute): the header and dashboard say so
            self._down.add(change.account_id)
            self.alerts.on_down()
            self.notify(
                f"{change.account_id} {state.status.name.lower()}: {state.status_message}",
                severity="error",
                timeout=10,
                markup=False,
            )

    # ================================================================== commands

    def run_command(self, label: str, call: Awaitable[Reply]) -> None:
        """Await a command's one reply in the background and say how it went.

        Replies are the core's and the venue's words, shown as they are: never as markup
        (a ``[/]`` in a venue's message would otherwise stop the console)."""

        async def run() -> None:
            reply = await call
            if reply.ok:
                extra = ""
                if isinstance(reply.result, dict) and "order_id" in reply.result:
                    extra = f" (order {reply.result['order_id']})"
                elif isinstance(reply.result, dict) and "summary" in reply.result:
                    extra = f": {reply.result['summary']}"
                self.notify(f"{label}: accepted{extra}", markup=False)
            elif isinstance(reply.result, dict) and reply.result.get("partial"):
                # some of its orders are working at the venue: not a plain rejection
                self.notify(
                    f"{label}: PARTLY SENT - {reply.error}", severity="warning", timeout=20, markup=False
                )
            elif OUTCOME_UNKNOWN in reply.error:
                self.notify(
                    f"{label}: NO ANSWER - {reply.error}", severity="warning", timeout=20, markup=False
                )
            else:
                self.alerts.on_rejected()
                self.notify(f"{label}: REJECTED - {reply.error}", severity="error", timeout=12, markup=False)

        self.run_worker(run(), group="commands")

    async def kill(self, account_id: str | None, *, keep_protective: bool = False) -> Reply:
        """The kill switch for one account or all, as one reply for a notification."""
        replies = await self.client.kill_switch(account_id, keep_protective=keep_protective)
        failed = [f"{a}: {r.error}" for a, r in replies.items() if not r.ok]
        if failed:
            return Reply(ok=False, error="; ".join(failed))

        def kept(result: dict[str, Any]) -> str:
            n = result.get("protective_running")
            return f", {n} protective kept running" if n else ""

        done = ", ".join(
            f"{a} halted, {r.result.get('strategies_stopped', 0)} strategies stopped, "
            f"{r.result.get('cancel_sent', 0)} cancels sent{kept(r.result)}"
            for a, r in replies.items()
            if isinstance(r.result, dict)
        )
        return Reply(ok=True, result={"summary": done})

    # ================================================================== navigation

    def show_account(self, account_id: str) -> None:
        self.account_id = account_id
        screen = self._account_screen
        if screen is None:
            return
        if isinstance(self.screen, DashboardScreen):
            self.pop_screen()  # the dashboard sits on top of the account screen
        screen.show_account(account_id)

    def _step_account(self, step: int) -> None:
        ids = self.client.account_ids
        current = ids.index(self.account_id) if self.account_id in ids else 0
        self.show_account(ids[(current + step) % len(ids)])

    def action_prev_account(self) -> None:
        self._step_account(-1)

    def action_next_account(self) -> None:
        self._step_account(1)

    def action_account(self, number: int) -> None:
        ids = self.client.account_ids
        if 1 <= number <= len(ids):
            self.show_account(ids[number - 1])
        else:
            self.notify(f"there is no account {number} (1..{len(ids)})", severity="warning")

    def action_dashboard(self) -> None:
        if not isinstance(self.screen, AccountScreen):
            return
        self._dashboard = DashboardScreen()
        self.push_screen(self._dashboard)

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen  # here: not needed for the first frame

        self.push_screen(HelpScreen(self.keymap))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # no navigation under a dialog: its keys (and the digits typed into it) are its own
        return not (isinstance(self.screen, ModalScreen) and action in _NAVIGATION)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for n, account_id in enumerate(self.client.account_ids, start=1):
            yield SystemCommand(
                f"Switch to account {account_id}",
                f"Show {account_id} (key {n})",
                lambda a=account_id: self.show_account(a),
            )
        # only what applies on the screen under the palette, run where its key would run it
        here = "account" if isinstance(screen, AccountScreen) else "dashboard"
        if not isinstance(screen, AccountScreen | DashboardScreen):
            here = "global"
        for action in ACTIONS:
            if action.id.startswith("account_") or action.scope not in ("global", here):
                continue
            target = self if action.scope == "global" else screen
            yield SystemCommand(
                action.title, action.help, lambda a=action, t=target: self.run_action(a.action, t)
            )
        # and Textual's own, but for its Quit: ours (above) is the same action, with our help text
        yield from (c for c in super().get_system_commands(screen) if c.title != "Quit")
