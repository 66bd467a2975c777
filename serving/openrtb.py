"""The ``/bid`` request and response: a documented subset of OpenRTB 2.5.

Request (``BidRequest``): ``id``; ``imp[]`` with ``id``, ``bidfloor`` (CPM, in the
source's price unit), ``tagid``, ``banner.w`` / ``banner.h`` and ``ext.context`` (any of
the model's context columns, e.g. the synthetic source's ``slot_position``); ``site``
(``domain``) or ``app`` (``bundle``); ``imp.ext.item_id`` (the ad, for a campaign without
a fixed one); ``device`` (``devicetype``, ``geo.region``,
``geo.city``); ``user`` (``id``, ``keywords``); and ``ext.campaign_id``, the campaign the
bidder bids for (configured in the campaigns file). Unknown fields are ignored, as
OpenRTB asks of bidders; a field of the wrong type is a 400 naming it.

How a request becomes the model's features (``imp_features``): ``user_id`` is
``user.id``, ``item_id`` the campaign's ad (item), or ``imp.ext.item_id`` for a campaign
that bids with any ad; the context columns the spec has are
read from the OpenRTB fields of ``OPENRTB_COLUMNS`` (e.g. iPinYou's ``domain`` from
``site.domain``, ``ad_slot_width`` from ``imp.banner.w``, the synthetic ``device`` from
``device.devicetype``), then overridden by ``imp.ext.context``; ``hour_of_day`` /
``day_of_week`` default to the request time (UTC). The result is validated like a
``/predict`` row.

Response (``bid_response``): ``{"id", "seatbid": [{"bid": [{"id", "impid", "price",
"adid", "crid", "ext": {"pctr", "pcvr", "strategy", "arm", "model_version",
"campaign_id"}}]}], "cur"}``; no bid on any impression is a 204 with no body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_OPEN = ConfigDict(extra="ignore", strict=True)


class Banner(BaseModel):
    model_config = _OPEN
    w: int | None = Field(default=None, ge=0)
    h: int | None = Field(default=None, ge=0)


class ImpExt(BaseModel):
    model_config = _OPEN
    context: dict[str, Any] = Field(default_factory=dict, description="Context columns of the model, by name.")
    item_id: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="The ad (item) the impression would show, for a campaign without a fixed item_id.",
    )  # fmt: skip


class Imp(BaseModel):
    model_config = _OPEN
    id: str = Field(min_length=1, max_length=64)
    bidfloor: float = Field(default=0.0, ge=0, description="Floor CPM in the source's price unit.")
    tagid: str | None = Field(default=None, max_length=256)
    banner: Banner | None = None
    ext: ImpExt = Field(default_factory=ImpExt)


class Site(BaseModel):
    model_config = _OPEN
    domain: str | None = Field(default=None, max_length=256)


class App(BaseModel):
    model_config = _OPEN
    bundle: str | None = Field(default=None, max_length=256)


class Geo(BaseModel):
    model_config = _OPEN
    region: str | None = Field(default=None, max_length=64)
    city: str | None = Field(default=None, max_length=64)


class Device(BaseModel):
    model_config = _OPEN
    devicetype: int | None = Field(default=None, ge=1, le=7, description="OpenRTB device type (1..7).")
    geo: Geo | None = None


class User(BaseModel):
    model_config = _OPEN
    id: str = Field(min_length=1, max_length=256)
    keywords: str | None = Field(default=None, max_length=1024)


class RequestExt(BaseModel):
    model_config = _OPEN
    campaign_id: str = Field(min_length=1, max_length=128, description="The campaign to bid for.")


class BidRequest(BaseModel):
    """``POST /bid`` body (OpenRTB 2.5 subset)."""

    model_config = _OPEN
    id: str = Field(min_length=1, max_length=128)
    imp: list[Imp] = Field(min_length=1, max_length=20)
    site: Site | None = None
    app: App | None = None
    device: Device | None = None
    user: User
    ext: RequestExt


class BidExt(BaseModel):
    pctr: float
    pcvr: float | None = None
    strategy: str
    arm: str | None = None
    model_version: str
    campaign_id: str


class Bid(BaseModel):
    id: str
    impid: str
    price: float
    adid: str | None
    crid: str | None
    ext: BidExt


class SeatBid(BaseModel):
    bid: list[Bid]


class BidResponse(BaseModel):
    """``POST /bid`` answer with at least one bid (no bid at all: 204, no body)."""

    id: str
    seatbid: list[SeatBid]
    cur: str = "USD"


# OpenRTB device types (2.5, list 5.21) -> the synthetic spec's device values.
DEVICE_TYPES = {1: "mobile", 2: "desktop", 3: "desktop", 4: "mobile", 5: "tablet", 6: "desktop", 7: "desktop"}

# Context column -> where OpenRTB carries it (read only when the spec has the column).
OPENRTB_COLUMNS: dict[str, tuple[str, ...]] = {
    "device": ("device", "devicetype"),
    "domain": ("site", "domain"),
    "ad_slot_id": ("imp", "tagid"),
    "ad_slot_width": ("imp", "banner", "w"),
    "ad_slot_height": ("imp", "banner", "h"),
    "ad_slot_floor_price": ("imp", "bidfloor"),
    "region": ("device", "geo", "region"),
    "city": ("device", "geo", "city"),
    "user_tags": ("user", "keywords"),
}


def _path(request: BidRequest, imp: Imp, path: tuple[str, ...]) -> Any:
    value: Any = imp if path[0] == "imp" else getattr(request, path[0])
    for name in path[1:]:
        if value is None:
            return None
        value = getattr(value, name)
    return value


def imp_features(
    request: BidRequest, imp: Imp, item_id: str | None, context_columns: Mapping[str, str]
) -> dict[str, Any]:
    """The model's request row for one impression (before validation): ids, the context
    columns from OpenRTB fields, then ``imp.ext.context``.

    Args:
        context_columns: the model's context columns and their dtypes.
    """
    row: dict[str, Any] = {"user_id": request.user.id}
    item_id = item_id if item_id is not None else imp.ext.item_id
    if item_id is not None:
        row["item_id"] = item_id
    for column, dtype in context_columns.items():
        path = OPENRTB_COLUMNS.get(column)
        if path is None:
            continue
        value = _path(request, imp, path)
        if column == "device" and value is not None:
            value = DEVICE_TYPES.get(value)
        if value is not None and dtype == "int":
            value = int(value)
        if value is not None:
            row[column] = value
    row.update(imp.ext.context)
    return row


def bid_response(request_id: str, bids: list[Bid], currency: str = "USD") -> BidResponse:
    """The OpenRTB response of ``bids`` (one seat)."""
    return BidResponse(id=request_id, seatbid=[SeatBid(bid=bids)], cur=currency)
