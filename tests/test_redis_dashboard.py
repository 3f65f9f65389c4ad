"""The dashboard of a console attached over Redis: a Host column, rows grouped by host."""

from __future__ import annotations

from tests.fake_client import ACCOUNT_IDS, FakeClient
from tests.test_tui_layout import settle, text_of
from tui.app import QTraderApp
from tui.screens.dashboard import AccountsTable, HostAccountsTable


class HostsClient(FakeClient):
    """The fake accounts as if run by two daemons."""

    def host_of(self, account_id: str) -> str:
        return "shanghai" if account_id == ACCOUNT_IDS[0] else "dalian"


async def test_accounts_of_several_hosts_show_their_host() -> None:
    app = QTraderApp(HostsClient())
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("d")
        await settle(pilot)
        table = app.screen.query_one("#accounts", HostAccountsTable)
        assert table.shown_columns[:3] == ["n", "host", "account"]
        header = text_of(table, 0)
        assert header.index("Host") < header.index("Account")
        assert str(table.get_cell(ACCOUNT_IDS[0], "host")) == "shanghai"
        assert all(str(table.get_cell(a, "host")) == "dalian" for a in ACCOUNT_IDS[1:])


async def test_one_core_keeps_the_plain_table() -> None:
    app = QTraderApp(FakeClient())
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("d")
        await settle(pilot)
        table = app.screen.query_one("#accounts", AccountsTable)
        assert not isinstance(table, HostAccountsTable) and "host" not in table.shown_columns
