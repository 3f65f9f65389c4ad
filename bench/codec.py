"""Codec: encode+decode of typed wire messages, msgspec vs stdlib json + dataclasses.

The stdlib side does the same work our codec does: dataclasses with enums by
name and ISO datetimes, validated back into objects on decode.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from enum import Enum
from typing import Any

import msgspec

from bench.report import print_json, print_table
from core.models import Direction, Offset, Order, OrderType, Status, Tick, now
from core.protocol import Message, decode_payload, encode_frame


def _dataclass_of(struct: type) -> type:
    """The dataclass twin of a model struct: the same fields, types and defaults."""
    fields = [
        (f.name, f.type) if f.required else (f.name, f.type, dataclasses.field(default=f.default))
        for f in msgspec.structs.fields(struct)
    ]
    # keyword-only, as the struct: fields with defaults may come before ones without
    return dataclasses.make_dataclass(f"Dc{struct.__name__}", fields, kw_only=True)


DcTick = _dataclass_of(Tick)


@dataclasses.dataclass
class DcOrder:
    account_id: str
    order_id: str
    vt_symbol: str
    direction: Direction
    offset: Offset
    type: OrderType
    price: float
    volume: float
    traded: float
    traded_price: float
    status: Status
    datetime: datetime
    update_time: datetime | None
    reference: str
    status_msg: str


_ENUMS = {"direction": Direction, "offset": Offset, "type": OrderType, "status": Status}


def _to_json(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.name
    if isinstance(obj, datetime):
        return obj.isoformat()
    raise TypeError(type(obj))


def _omit_defaults(obj: Any) -> dict[str, Any]:
    """The fields that differ from their defaults, as ``omit_defaults`` sends a tick."""
    if not isinstance(obj, DcTick):
        return dataclasses.asdict(obj)
    return {
        f.name: getattr(obj, f.name)
        for f in dataclasses.fields(obj)
        if f.default is dataclasses.MISSING or getattr(obj, f.name) != f.default
    }


def _stdlib_encode(msg_type: str, obj: Any) -> bytes:
    body = json.dumps(
        {
            "type": msg_type,
            "account_id": "DQ1",
            "seq": 1,
            "ts": 0.0,
            "req_id": None,
            "data": _omit_defaults(obj),
        },
        default=_to_json,
    ).encode()
    return len(body).to_bytes(4, "big") + body


def _stdlib_decode(frame: bytes) -> Any:
    env = json.loads(frame[4:])
    data = env["data"]
    cls = DcTick if env["type"] == "tick" else DcOrder
    for key, enum in _ENUMS.items():
        if key in data:
            data[key] = enum[data[key]]
    data["datetime"] = datetime.fromisoformat(data["datetime"])
    if data.get("update_time"):
        data["update_time"] = datetime.fromisoformat(data["update_time"])
    return cls(**data)


def _samples() -> tuple[Tick, Order]:
    tick = Tick(
        account_id="DQ1",
        vt_symbol="au2612.SHFE",
        datetime=now(),
        last_price=912.34,
        volume=123456,
        turnover=1.2e11,
        open_interest=234567,
        last_volume=3,
        pre_settlement=910.0,
        pre_close=909.5,
        open_price=911.0,
        high_price=915.0,
        low_price=905.0,
        limit_up=982.8,
        limit_down=837.2,
        bid_price_1=912.32,
        bid_volume_1=12,
        ask_price_1=912.36,
        ask_volume_1=7,
    )
    order = Order(
        account_id="DQ1",
        order_id="SIM.1234567",
        vt_symbol="au2612.SHFE",
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=OrderType.LIMIT,
        price=912.34,
        volume=2,
        status=Status.NOTTRADED,
        datetime=now(),
    )
    return tick, order


def _time(fn: Any, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def run(*, quick: bool = False) -> dict[str, Any]:
    n = 2_000 if quick else 20_000
    tick, order = _samples()
    rows = []
    figures: dict[str, Any] = {}
    for name, obj in (("tick", tick), ("order", order)):
        dc = (DcTick if name == "tick" else DcOrder)(**{f: getattr(obj, f) for f in obj.__struct_fields__})
        fast = _time(
            lambda obj=obj, name=name: decode_payload(encode_frame(Message.new(type=name, data=obj))[4:]), n
        )
        slow = _time(lambda dc=dc, name=name: _stdlib_decode(_stdlib_encode(name, dc)), n)
        # same content both ways
        assert _stdlib_decode(_stdlib_encode(name, dc)) == dc
        assert decode_payload(encode_frame(Message.new(type=name, data=obj))[4:]).data == obj
        rows.append((name, fast * 1e6, slow * 1e6, slow / fast))
        figures[f"{name}_msgspec_us"] = round(fast * 1e6, 2)
        figures[f"{name}_stdlib_us"] = round(slow * 1e6, 2)
        figures[f"{name}_speedup"] = round(slow / fast, 1)
    print_table(
        "codec: encode+decode one framed, typed message (best of 5)",
        ["message", "msgspec us", "json+dataclass us", "speedup x"],
        rows,
    )
    figures["target_speedup"] = 5
    print_json("codec", figures)
    return figures
