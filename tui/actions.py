"""The one table of console actions.

It feeds the key bindings (and so the footer), the help screen and the command
palette; ``ui.keys`` in the config rebinds any of them by id. ``ctrl+c`` is
deliberately not in it: it never triggers a trading action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from textual.binding import Binding


Scope = Literal["global", "account", "dashboard"]


@dataclass(frozen=True, slots=True)
class ConsoleAction:
    id: str  # rebindable name (ui.keys)
    key: str  # Textual key name(s), comma separated
    action: str  # the App action it runs
    title: str  # footer / palette
    help: str  # help screen / palette detail
    scope: Scope = "account"
    footer: bool = True
    display_key: str = ""  # how help shows the key, when the key name is unfriendly


ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction("buy", "b", "buy", "Buy", "Order entry to buy the selected contract (prefilled)"),
    ConsoleAction("sell", "s", "sell", "Sell", "Order entry to sell the selected contract (prefilled)"),
    ConsoleAction("close", "c", "close_position", "Close", "Close the selected position (confirmed)"),
    ConsoleAction(
        "cancel",
        "x",
        "cancel_order",
        "Cancel",
        "Cancel the selected working order, or the selected conditional order (Conditional tab)",
    ),
    ConsoleAction(
        "conditional",
        "w",
        "conditional",
        "Cond.",
        "Conditional order (条件单) on the selected quote, or a stop-loss / take-profit on the selected "
        "position, held by the trader (confirmed)",
        footer=False,  # the footer is full at 100 columns: help (?) and the palette list it
    ),
    ConsoleAction(
        "reverse",
        "v",
        "reverse",
        "Reverse",
        "Reverse (反手) the selected position: close it, then open the same volume the other way once "
        "the close has filled (confirmed)",
        footer=False,
    ),
    ConsoleAction(
        "close_contract",
        "C",
        "close_contract",
        "Close contract",
        "Close both the long and the short of the selected contract (confirmed)",
        footer=False,
    ),
    ConsoleAction(
        "cancel_all", "X", "cancel_all", "Cancel all", "Cancel every working order of the account (confirmed)"
    ),
    ConsoleAction(
        "toggle_orders",
        "o",
        "toggle_orders",
        "Working/all",
        "Orders panel: working orders only, or all",
        footer=False,
    ),
    ConsoleAction(
        "halt",
        "h",
        "halt",
        "Halt",
        "Halt the account (no new orders) or resume it (confirmed)",
        scope="account",
    ),
    ConsoleAction(
        "reducing",
        "R",
        "reducing",
        "Reduce only",
        "Close-only: the account to REDUCING (only orders that reduce a position), or back to ACTIVE (confirmed)",
        footer=False,
    ),
    ConsoleAction(
        "equity_range",
        "e",
        "equity_range",
        "Range",
        "Equity chart: today / 5 days / all (the stored curve, thinned to the chart)",
        footer=False,
    ),
    ConsoleAction(
        "strategy", "t", "toggle_strategy", "Strategy", "Start / stop the selected strategy", footer=False
    ),
    ConsoleAction(
        "auto_trading", "a", "auto_trading", "Auto", "Auto-trading on (confirmed) / off", footer=False
    ),
    ConsoleAction(
        "watch_add",
        "i",
        "watch_add",
        "Add",
        "Watchlist: add a contract (typed, completed from the venue's contracts) after the selected one",
        footer=False,
    ),
    ConsoleAction(
        "watch_remove",
        "delete",
        "watch_remove",
        "Remove",
        "Watchlist: remove the selected contract from the Market panel",
        footer=False,
        display_key="Del",
    ),
    ConsoleAction(
        "watch_up",
        "ctrl+up,K",
        "watch_move(-1)",
        "Move up",
        "Watchlist: move the selected contract up (K where the terminal has no ctrl+up)",
        footer=False,
        display_key="ctrl+up / K",
    ),
    ConsoleAction(
        "watch_down",
        "ctrl+down,J",
        "watch_move(1)",
        "Move down",
        "Watchlist: move the selected contract down (J where the terminal has no ctrl+down)",
        footer=False,
        display_key="ctrl+down / J",
    ),
    ConsoleAction(
        "main_contract",
        "m",
        "main_contract",
        "Main contract",
        "Watchlist: replace the selected contract by its product's main contract (largest open interest)",
        footer=False,
    ),
    ConsoleAction(
        "history",
        "H",
        "history",
        "History",
        "History: the account's trades by trading days and contract, day totals, strategy records",
        footer=False,
    ),
    ConsoleAction(
        "prev_account",
        "left_square_bracket",
        "prev_account",
        "Prev",
        "Previous account",
        scope="global",
        footer=False,
        display_key="[",
    ),
    ConsoleAction(
        "next_account",
        "right_square_bracket",
        "next_account",
        "Next",
        "Next account",
        scope="global",
        footer=False,
        display_key="]",
    ),
    *(
        ConsoleAction(
            f"account_{n}",
            str(n),
            f"account({n})",
            f"Account {n}",
            f"Account number {n}",
            scope="global",
            footer=False,
        )
        for n in range(1, 10)
    ),
    ConsoleAction(
        "dashboard", "d", "dashboard", "Dash", "Dashboard: all accounts at a glance", scope="global"
    ),
    ConsoleAction("open", "enter", "open_account", "Open", "Open the selected account", scope="dashboard"),
    ConsoleAction(
        "start", "g", "start_trader", "Start", "Start the selected account's trader", scope="dashboard"
    ),
    ConsoleAction(
        "stop",
        "p",
        "stop_trader",
        "Stop",
        "Stop the selected account's trader (confirmed)",
        scope="dashboard",
    ),
    ConsoleAction(
        "restart",
        "r",
        "restart_trader",
        "Restart",
        "Restart the selected account's trader (confirmed)",
        scope="dashboard",
    ),
    ConsoleAction(
        "kill_all",
        "K",
        "kill_all",
        "Kill all",
        "Kill switch for EVERY account: HALT, stop strategies, cancel working orders (confirmed)",
        scope="dashboard",
    ),
    ConsoleAction("help", "question_mark", "help", "Help", "This help", scope="global", display_key="?"),
    ConsoleAction(
        "quit", "q", "quit", "Quit", "Quit (stops the traders this console started)", scope="global"
    ),
)

BY_ID = {a.id: a for a in ACTIONS}


def bindings(scope: Scope) -> list[Binding]:
    """Bindings of one scope, each with its action id so ``set_keymap`` can rebind it."""
    from textual.binding import Binding  # here: --no-ui checks ui.keys without loading Textual

    return [Binding(a.key, a.action, a.title, show=a.footer, id=a.id) for a in ACTIONS if a.scope == scope]


#: Keys no action may take, and why: they belong to the dialogs, the tables and Textual itself.
RESERVED_KEYS: dict[str, str] = {
    "ctrl+c": "ctrl+c is never bound to a trading action",
    "y": "y answers yes in a confirmation",
    "n": "n answers no in a confirmation",
    "escape": "escape closes dialogs and forms",
    "ctrl+q": "ctrl+q is the console's own quit",
    "ctrl+p": "ctrl+p opens the command palette",
    **{
        key: f"{key} moves the cursor in tables and lists"
        for key in ("up", "down", "left", "right", "pageup", "pagedown", "home", "end", "tab", "shift+tab")
    },
}


def _keys(spec: str) -> list[str]:
    return [k for k in spec.replace(" ", "").split(",") if k]


def _overlap(a: Scope, b: Scope) -> bool:
    """Two scopes are live at the same time: global keys work on every screen."""
    return a == b or "global" in (a, b)


def validate_keymap(keys: Mapping[str, str]) -> dict[str, str]:
    """``ui.keys`` checked against the table; ``ValueError`` naming the field ``ui.keys.<id>``.

    Refused: an unknown action id; an empty key; a reserved key (``RESERVED_KEYS``); and a key
    that two actions would share on one screen, whether both were rebound to it or the rebinding
    takes another action's default key (``buy: "s"`` would hide Sell).
    """
    keymap: dict[str, str] = {}
    for action_id, key in keys.items():
        if action_id not in BY_ID:
            known = ", ".join(sorted(BY_ID))
            raise ValueError(f"ui.keys.{action_id}: unknown action (expected one of: {known})")
        if not isinstance(key, str) or not _keys(key):
            raise ValueError(f"ui.keys.{action_id}: expected a key name such as 'f' or 'ctrl+f'")
        for k in _keys(key):
            if k in RESERVED_KEYS:
                raise ValueError(f"ui.keys.{action_id}: '{k}' is reserved: {RESERVED_KEYS[k]}")
        keymap[action_id] = key
    in_use: list[tuple[str, ConsoleAction]] = []  # every key after rebinding, and whose it is
    for action in ACTIONS:
        for k in _keys(keymap.get(action.id, action.key)):
            for used, other in in_use:
                if used == k and _overlap(other.scope, action.scope):
                    raise ValueError(_conflict(k, action, other, keymap))
            in_use.append((k, action))
    return keymap


def _conflict(key: str, action: ConsoleAction, other: ConsoleAction, keymap: Mapping[str, str]) -> str:
    # name the field the user wrote: the rebound one (if both are, the later in the table)
    rebound, kept = (action, other) if action.id in keymap else (other, action)
    if kept.id in keymap:
        return f"ui.keys.{rebound.id}: '{key}' is also bound to {kept.id} ({kept.title}): one key, one action"
    return (
        f"ui.keys.{rebound.id}: '{key}' is the default key of {kept.id} ({kept.title}), which it would "
        f"hide: pick another key, or rebind {kept.id} too"
    )


def key_label(action: ConsoleAction, keymap: Mapping[str, str]) -> str:
    """The key as the operator types it, after rebinding."""
    if action.id in keymap:
        return keymap[action.id]
    return action.display_key or action.key
