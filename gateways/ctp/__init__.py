"""The CTP gateway: a CTP futures account through vnpy_ctp, driven by a bare vnpy ``EventEngine``.

vnpy_ctp's ``CtpGateway`` does the CTP protocol; this package runs it inside the trader process
and turns its world into ours. Where things live:

- ``gateway.py``: ``CtpGateway``, our ``Gateway``: connection status, sending, the events the
  trader receives;
- ``vnpy_ext.py``: vnpy_ctp's td/md apis and gateway, extended (the only module importing vnpy);
- ``link.py``: the fronts' connection callbacks as events (what the status light follows);
- ``fields.py``: CTP's fields and vnpy's objects as ``core.models`` (types, statuses, offsets,
  prices, ids, positions, disconnect reasons);
- ``book.py``: the account's day as reported (orders, fills, positions, funds, references);
- ``queries.py``: the query chain (one query in flight, paced, retried);
- ``commission.py``: the broker's commission rates, and the fills that wait for them;
- ``settings.py``: the ``ctp:`` settings as read here and as vnpy_ctp wants them.

**Threads.** The CTP api calls back on its own threads and vnpy_ctp puts what it makes of those
callbacks on the EventEngine's queue; the EventEngine's thread hands every event to the trader's
asyncio loop with ``loop.call_soon_threadsafe`` and does nothing else, so the listener and our
caches are only ever touched on the loop. Each handler on either side is wrapped: vnpy's
EventEngine thread dies silently when a handler raises, and one bad event must never stop the
ones behind it (the error goes to ``on_log``). vnpy's ``MainEngine`` is never used (it changes
the process's directory).

**Flow files.** vnpy_ctp writes them under ``<vnpy's .vntrader>/ctp_<account>`` (the vnpy gateway
is named ``CTP_<account_id>``). vnpy picks ``.vntrader`` from the current directory when it is
first imported; the trader process runs in the account's state directory, and ``CtpGateway``
creates ``<state_dir>/.vntrader`` before it imports vnpy, so each account's flow files stay in
its own state directory. When vnpy was imported elsewhere first (an embedded trader), a WARNING
says where the flow files go.

**Test seam.** When the environment variable ``QTRADER_CTP_FAKE_FRONT`` is ``"module:function"``,
that function is imported and called as ``function(vnpy_gateway, state_dir)`` before anything
touches the network, so an offline test can replace the native request methods of
``vnpy_gateway.td_api`` / ``md_api`` with a scripted front (``tests/fake_ctp.py``). A trader
process inherits it from its manager's environment.
"""

from gateways.ctp.gateway import FAKE_FRONT_ENV, CtpGateway
from gateways.ctp.settings import CtpSettingsView

__all__ = ["FAKE_FRONT_ENV", "CtpGateway", "CtpSettingsView"]
