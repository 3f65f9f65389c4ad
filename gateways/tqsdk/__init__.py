"""The TqSdk gateway: one TqSdk account (``TqSim``, ``TqKq`` or a real ``TqAccount``) behind
``Gateway``.

Where things live:

- ``gateway.py`` — ``TqsdkGateway``, on the trader's loop: checks and numbers orders, queues
  requests to the TqSdk thread, hands its events to the listener;
- ``worker.py`` — ``Worker``, the TqSdk thread: the only code that touches a ``TqApi`` (its
  ``wait_update`` loop, requests, connection notices, session rebuilds and retries);
- ``session.py`` — building one ``TqApi`` (auth, account object, a stop flag that ends its waits);
- ``publisher.py`` — ``Publisher``: what the trader was told of TqSdk's books, pushing what changed;
- ``mapping.py`` — symbols, offsets, order states and TqSdk entities as core.models objects;
- ``scrub.py`` — ``Scrubber``: no secret or URL path in any text the gateway shows;
- ``settings.py`` — ``TqsdkSettingsView``, what the gateway reads of its ``tqsdk:`` settings.

Imports nothing of tqsdk until a gateway connects (tqsdk takes seconds to import).
"""

from gateways.tqsdk.gateway import TqsdkGateway
from gateways.tqsdk.scrub import Scrubber
from gateways.tqsdk.settings import TqsdkSettingsView
from gateways.tqsdk.worker import NOTIFY_LOST, NOTIFY_RESTORED, Worker

__all__ = [
    "NOTIFY_LOST",
    "NOTIFY_RESTORED",
    "Scrubber",
    "TqsdkGateway",
    "TqsdkSettingsView",
    "Worker",
]
