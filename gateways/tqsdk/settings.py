"""What the TqSdk gateway reads of the account's validated ``tqsdk:`` settings.

``account_type`` (tqsim | tqkq | account), ``broker``/``user``/``password`` (account only),
``auth_user``/``auth_password``, ``auth_url`` (TqSdk reads ``TQ_AUTH_URL`` when ``TqAuth`` is
built: set under a lock for that moment only, so several gateways in one process are safe),
``md_url`` (``TqApi(_md_url=...)``), ``init_balance`` (TqSim).

The gateway only reads them: config/ validated them already (config.schema.TqsdkSettings).
"""

from __future__ import annotations

from typing import Protocol


class TqsdkSettingsView(Protocol):
    """What the gateway reads of its validated ``tqsdk:`` settings (config.schema.TqsdkSettings)."""

    account_type: str
    auth_user: str
    auth_password: str
    broker: str
    user: str
    password: str
    auth_url: str | None
    md_url: str | None
    init_balance: float
