"""The order ticket's logic, without widgets: fields in, an Order or per-field errors out.

The ticket validates as the operator types by building the real `Order` (the
engine's one set of field rules) and mapping pydantic's errors back onto the
ticket's fields, so the desk never keeps a second copy of the rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from engine import Instrument, Order, OrderSide, OrderType, TimeInForce
from engine.models import URGENCIES, VWAP_PROFILES, quote

SMART_ROUTE = "SMART"

# Which ticket fields each order type shows, in screen order.
FIELDS_BY_TYPE: dict[OrderType, tuple[str, ...]] = {
    OrderType.MARKET: ("quantity", "venue"),
    OrderType.LIMIT: ("quantity", "price", "venue", "tif"),
    OrderType.ICEBERG: ("quantity", "price", "display_size", "display_variance"),
    OrderType.TWAP: ("quantity", "price", "duration_s", "slices"),
    OrderType.VWAP: ("quantity", "price", "duration_s", "max_participation", "profile"),
    OrderType.SMART: ("quantity", "price", "urgency", "duration_s"),
}

LABELS = {
    "quantity": "Quantity",
    "price": "Limit price",
    "venue": "Route",
    "tif": "Time in force",
    "display_size": "Display size",
    "display_variance": "Display variance",
    "duration_s": "Duration (s)",
    "slices": "Slices",
    "max_participation": "Max participation",
    "profile": "Volume profile",
    "urgency": "Urgency",
}

HINTS = {
    "quantity": "> 0, a multiple of the lot",
    "price": "> 0, on the tick",
    "display_size": "shown at a time, in (0, quantity]",
    "display_variance": "refill jitter, a fraction in [0, 1)",
    "duration_s": "seconds, > 0",
    "slices": "whole number >= 1",
    "max_participation": "fraction of market volume, in (0, 1]",
}

# One line under the fields whose meaning is not in their name (at most 53 characters:
# the width of the field and error columns).
FIELD_HELP = {
    "display_variance": "each refill shows display x random(1 - v, 1); 0: full",
    "max_participation": "our fills <= this share of others' volume (0.2 = 20%)",
    "profile": "u_shape: heavier at both ends; market: recent volume",
    "urgency": "low: rest at the touch; normal: near mid; high: cross",
}

CHOICES: dict[str, tuple[str, ...]] = {
    "tif": tuple(t.value for t in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY)),
    "profile": VWAP_PROFILES,
    "urgency": URGENCIES,
}

DEFAULTS: dict[str, str] = {
    "side": "BUY",
    "symbol": "BTC/USD",
    "type": "LIMIT",
    "quantity": "0.1",
    "price": "",
    "venue": SMART_ROUTE,
    "tif": "GTC",
    "display_size": "0.05",
    "display_variance": "0",
    "duration_s": "60",
    "slices": "10",
    "max_participation": "0.2",
    "profile": "u_shape",
    "urgency": "normal",
}

# The fields whose value is one of a list (type, side and the ticket's drop-downs but the route).
_ONE_OF: dict[str, tuple[str, ...]] = {
    "type": tuple(t.value for t in OrderType),
    "side": tuple(s.value for s in OrderSide),
    **CHOICES,
}


def clean_values(values: Any) -> dict[str, str]:
    """Ticket values from anything (a hand-edited settings file): each field falls back on its own.

    A value of the wrong kind (`null`, a list, an unknown type or choice) takes the field's
    default; a number becomes its text (`5` -> "5"); unknown keys are dropped. Whether a
    number is acceptable is the ticket's business as the operator types, not this one's.
    """
    if not isinstance(values, Mapping):
        return dict(DEFAULTS)
    clean = dict(DEFAULTS)
    for name, default in DEFAULTS.items():
        value = values.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            value = plain(value)
        if not isinstance(value, str):
            continue
        choices = _ONE_OF.get(name)
        if choices is not None and value not in choices:
            continue
        clean[name] = value
    return clean


OPTIONAL_PRICE = {OrderType.TWAP, OrderType.VWAP, OrderType.SMART}
_METADATA_KEY = re.compile(r"metadata\['([a-z_]+)'\]|metadata key '([a-z_]+)'")


@dataclass(slots=True)
class TicketResult:
    order: Order | None
    venue: str | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.order is not None


# What a number field accepts: ASCII digits, an optional sign, a decimal point and an
# exponent, and commas only as thousands grouping (1,000 or 12,345.5). Python's float()
# alone is too kind for a ticket: it reads Arabic-Indic and full-width digits ("١٢",
# "１２") and underscores ("1_5") as numbers, and dropping every comma would read a
# decimal comma (1,5) as 15, an order ten times the size meant. The words inf and nan
# pass through so that their error names the real rule (a finite number).
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GROUPED_NUMBER = re.compile(r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_NOT_FINITE = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def _number(name: str, text: str, *, whole: bool = False, hint: str | None = None) -> Any:
    typed = text.strip()
    label = LABELS.get(name, name)
    if not typed:
        hint = hint or HINTS.get(name)
        raise ValueError(f"{label} is required" + (f" ({hint})" if hint else ""))
    if not typed.isascii():
        raise ValueError(f"{label} takes the digits 0-9 only, got {quote(typed)}")
    kind = "a whole number" if whole else "a number"
    text = typed
    if "," in typed:
        text = typed.replace(",", "")
        if not _GROUPED_NUMBER.fullmatch(typed):
            if _PLAIN_NUMBER.fullmatch(text):  # 1,5 or 1,0000: a decimal comma, or a slip
                raise ValueError(f"{label}: use . for decimals: got {quote(typed)}")
            raise ValueError(f"{label} must be {kind}, got {quote(typed)}")
    if not (_PLAIN_NUMBER.fullmatch(text) or _NOT_FINITE.fullmatch(text)):
        raise ValueError(f"{label} must be {kind}, got {quote(typed)}")
    try:
        return int(text) if whole else float(text)
    except ValueError:
        raise ValueError(f"{label} must be {kind}, got {quote(typed)}") from None


def field_hints(instrument: Instrument | None) -> dict[str, str]:
    """Each field's hint, with the instrument's own lot, minimum and tick when it is known."""
    hints = dict(HINTS)
    if instrument is not None:
        lot, least = instrument.lot_size, instrument.min_quantity
        hints["quantity"] = f"a multiple of {lot}" + ("" if least <= lot else f", at least {least}")
        hints["price"] = f"> 0, a multiple of the tick {instrument.tick_size}"
    return hints


def build_order(values: dict[str, str], order_id: str, *, instrument: Instrument | None = None,
                market_price: float | None = None) -> TicketResult:
    """Build the Order the ticket describes, or say what is wrong with which field.

    With the symbol's `instrument`, what a venue listing it would refuse for certain
    (off the lot or the tick, under the minimum quantity, outside its notional filters)
    is an error too, in the venue's words; `market_price` is where a market order would
    trade (the far touch), for its notional.
    """
    errors: dict[str, str] = {}
    hints = field_hints(instrument)
    try:
        order_type = OrderType(values.get("type", "LIMIT"))
        side = OrderSide(values.get("side", "BUY"))
    except ValueError as exc:
        return TicketResult(None, None, {"type": str(exc)})
    shown = FIELDS_BY_TYPE[order_type]
    kwargs: dict[str, Any] = {
        "id": order_id,
        "symbol": values.get("symbol", "").strip(),
        "side": side,
        "type": order_type,
    }
    metadata: dict[str, Any] = {}

    def parse(name: str, whole: bool = False) -> Any:
        try:
            return _number(name, values.get(name, ""), whole=whole, hint=hints.get(name))
        except ValueError as exc:
            errors[name] = str(exc)
            return None

    kwargs["quantity"] = parse("quantity")
    if "price" in shown:
        if order_type in OPTIONAL_PRICE and not values.get("price", "").strip():
            kwargs["price"] = None
        else:
            kwargs["price"] = parse("price")
    if "tif" in shown:
        kwargs["time_in_force"] = values.get("tif", "GTC")
    for name in ("display_size", "display_variance", "duration_s", "max_participation"):
        if name in shown:
            metadata[name] = parse(name)
    if "slices" in shown:
        metadata["slices"] = parse("slices", whole=True)
    for name in ("profile", "urgency"):
        if name in shown:
            metadata[name] = values.get(name, DEFAULTS[name])
    if order_type is OrderType.ICEBERG and metadata.get("display_variance") == 0:
        metadata.pop("display_variance")
    kwargs["metadata"] = metadata
    venue = values.get("venue", SMART_ROUTE) if "venue" in shown else SMART_ROUTE
    if errors:
        return TicketResult(None, None, errors)
    try:
        order = Order(**kwargs)
    except ValidationError as exc:
        for err in exc.errors():
            name = _field_of(err)
            errors.setdefault(name, _message(err))
        return TicketResult(None, None, errors)
    if instrument is not None:
        errors = venue_problems(order, instrument, market_price=market_price)
        if errors:
            return TicketResult(None, None, errors)
    return TicketResult(order, None if venue == SMART_ROUTE else venue, {})


def _small(value: float) -> str:
    """A size or price as a venue's message writes it, but a small one as typed (0.00001, not 1e-05)."""
    text = plain(value)
    return format(Decimal(repr(value)), "f") if "e-" in text else text


def _size_problem(what: str, quantity: float, inst: Instrument) -> str | None:
    """A venue's refusal of a size: under the minimum quantity, or off the lot (its words)."""
    lots = inst.quantity_to_lots(quantity)
    if (lots is not None and lots < inst.min_lots) or quantity < float(inst.min_quantity):
        return f"{what} {_small(quantity)} is under the minimum {inst.min_quantity} for {inst.symbol}"
    if lots is None:
        return f"{what} {_small(quantity)} is not a multiple of the lot {inst.lot_size} for {inst.symbol}"
    return None


def venue_problems(order: Order, inst: Instrument, *, market_price: float | None = None) -> dict[str, str]:
    """What a venue listing `inst` refuses in `order` for certain, by ticket field, in the
    venue's words; a notional outside the filters is keyed "notional" (no field of its own).

    What a venue sees of an algorithm is its children: an ICEBERG's display size is
    judged as an order of its own; TWAP, VWAP and SMART children are sized by their
    algorithm, so only their parent's lot, minimum, tick and slices are judged.
    """
    problems: dict[str, str] = {}
    size = _size_problem("quantity", order.quantity, inst)
    if size is not None:
        problems["quantity"] = size
    if order.price is not None and inst.price_to_ticks(order.price) is None:
        problems["price"] = (f"price {_small(order.price)} is not a multiple of the tick {inst.tick_size} "
                             f"for {inst.symbol}")
    if problems:
        return problems  # the filters judge an order that is on the lot and the tick
    if order.type is OrderType.ICEBERG:
        # Its algorithm shows the display size rounded down to the lot.
        display = float(order.metadata["display_size"])
        lots = inst.lots_at_most(display)
        if lots < max(inst.min_lots, 1):
            problems["display_size"] = (f"display size {_small(display)} is under the minimum "
                                        f"{inst.min_quantity} for {inst.symbol}")
        elif (refusal := inst.filter_refusal(inst.lots_to_quantity(lots), order.price)) is not None:
            problems["display_size" if refusal.startswith("quantity") else "notional"] = (
                f"each child shows the display size: {refusal}")
    elif order.type is OrderType.TWAP:
        slices = int(order.metadata.get("slices", 1))
        lots = inst.quantity_to_lots(order.quantity) or 0
        if lots < slices * inst.min_lots:
            most = max(lots // max(inst.min_lots, 1), 1)
            problems["slices"] = (
                f"TWAP slice {_small(order.quantity / slices)} ({_small(order.quantity)} in {slices:,} slices) "
                f"is under the minimum quantity {inst.min_quantity} of {inst.symbol}: use at most {most:,} "
                "slices, or a larger quantity")
    elif order.type in (OrderType.LIMIT, OrderType.MARKET):
        market = order.type is OrderType.MARKET
        refusal = inst.filter_refusal(order.quantity, market_price if market else order.price, market=market)
        if refusal is not None:
            problems["quantity" if refusal.startswith("quantity") else "notional"] = refusal
    return problems


# pydantic's numeric bound errors, in the ticket's words: (operator, key of the bound in ctx).
_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def exact(value: Any) -> str:
    """A number as the operator typed it, with thousands separators: 49,100 or 0.0001, never rounded."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value)
    text = f"{value:,}"
    return text[:-2] if text.endswith(".0") else text


def plain(value: float) -> str:
    """A number for an input field: every digit kept (`:g` would round 49100.55), no separators."""
    return exact(value).replace(",", "")


def _field_of(err: dict[str, Any]) -> str:
    loc = err.get("loc") or ("",)
    name = str(loc[0])
    if name == "metadata":
        m = _METADATA_KEY.search(err.get("msg", ""))
        if m:
            return m.group(1) or m.group(2)
    if name == "time_in_force":
        return "tif"
    return name or "quantity"


def _message(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    name = _field_of(err)
    label = LABELS.get(name, name)
    bound = _BOUNDS.get(str(err.get("type")))
    if bound is not None:
        op, key = bound
        limit = (err.get("ctx") or {}).get(key)
        return f"{label} must be {op} {exact(limit)}, got {exact(err.get('input'))}"
    if err.get("type") == "finite_number":
        return f"{label} must be a finite number, got {exact(err.get('input'))}"
    if msg.startswith(f"{name} "):
        msg = label + msg[len(name):]  # "price must be..." is the "Limit price" field here
    # Speak the ticket's words: "metadata['slices']" is the "Slices" field here.
    return _METADATA_KEY.sub(lambda m: LABELS.get(m.group(1) or m.group(2), m.group(0)), msg)


def describe(order: Order, venue: str | None) -> str:
    """One line an operator reads before pressing Enter."""
    # Every digit: `:g` keeps six, so 49,100.55 read 49100.6 and 1,234,567 read 1.23457e+06.
    parts = [order.side.value, plain(order.quantity), order.symbol, order.type.value]
    if order.price is not None:
        parts.append(f"@ {plain(order.price)}")
    elif order.type in OPTIONAL_PRICE:
        parts.append("no limit")
    if order.type in (OrderType.LIMIT,) and order.time_in_force is not TimeInForce.GTC:
        parts.append(order.time_in_force.value)
    meta = ", ".join(f"{k}={v}" for k, v in order.metadata.items())
    if meta:
        parts.append(f"({meta})")
    parts.append(f"→ {venue or 'smart routing'}")
    return " ".join(parts)


# -- amend (cancel/replace) ------------------------------------------------------------------

# A new price further than this share from the current one asks for a confirmation: the
# engine's price band refuses far prices anyway, but a typo that stays in the band is sent.
AMEND_PRICE_JUMP = 0.10


@dataclass(slots=True)
class AmendPlan:
    """What an amend dialog would send: new values (None = unchanged), or errors by field.

    `warnings` are reasons to ask for an explicit confirmation before sending.
    """

    quantity: float | None
    price: float | None
    summary: str
    errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and (self.quantity is not None or self.price is not None)


def _nearer(value: float, this: float, other: float) -> bool:
    """`value` is nearer (as a ratio) to `other` than to `this`: typed in the wrong field?"""
    return abs(math.log(value / other)) < abs(math.log(value / this))


def plan_amend(quantity_text: str, price_text: str, *, quantity: float, price: float | None,
               symbol: str = "") -> AmendPlan:
    """Check an amend's fields as the ticket checks its own, and say what would be sent.

    A blank field keeps the current value. Numbers go through the same `Order` rules as
    the ticket (bounds included), so the dialog never accepts what a ticket refuses.
    """
    errors: dict[str, str] = {}
    new: dict[str, float | None] = {}
    for name, text in (("quantity", quantity_text), ("price", price_text)):
        if not text.strip():
            new[name] = None
            continue
        try:
            new[name] = _number(name, text)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        return AmendPlan(None, None, "", errors)
    qty = new["quantity"] if new["quantity"] != quantity else None
    px = new["price"] if new["price"] != price else None
    final_qty = quantity if qty is None else qty
    final_px = price if px is None else px
    try:
        Order(id="amend", symbol=symbol or "?", side=OrderSide.BUY,
              type=OrderType.MARKET if final_px is None else OrderType.LIMIT,
              quantity=final_qty, price=final_px)
    except ValidationError as exc:
        for err in exc.errors():
            name = _field_of(err)
            if name in ("quantity", "price"):
                errors.setdefault(name, _message(err))
    if errors:
        return AmendPlan(None, None, "", errors)
    parts = [
        f"quantity {exact(quantity)} -> {exact(qty)}" if qty is not None else f"quantity unchanged {exact(quantity)}",
        f"price {exact(price) if price is not None else 'none'} -> {exact(px)}" if px is not None
        else f"price unchanged {exact(price) if price is not None else '(none)'}",
    ]
    plan = AmendPlan(qty, px, ", ".join(parts))
    if qty is None and px is None:
        plan.errors["quantity"] = "nothing changed: type a new quantity or price"
        return plan
    if price is not None:
        if qty is not None and _nearer(qty, quantity, price):
            plan.warnings.append(f"the new quantity {exact(qty)} is nearer the current price {exact(price)} "
                                 f"than the current quantity {exact(quantity)}")
        if px is not None and _nearer(px, price, quantity):
            plan.warnings.append(f"the new price {exact(px)} is nearer the current quantity {exact(quantity)} "
                                 f"than the current price {exact(price)}")
        if px is not None and abs(px - price) > AMEND_PRICE_JUMP * price:
            plan.warnings.append(f"the new price {exact(px)} is {abs(px / price - 1):.0%} from the current "
                                 f"{exact(price)} (more than {AMEND_PRICE_JUMP:.0%})")
    return plan
