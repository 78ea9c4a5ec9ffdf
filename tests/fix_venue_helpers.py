"""What the FixVenue tests run against, all on one network loop in a daemon thread (so the
FixVenue's blocking calls and the engine's own loop never wait on each other): the real
`FixVenueServer` over frozen simulators, a TCP proxy that can swallow answers and cut the
line, and a scripted FIX acceptor that answers per the wire contract (SecurityList, market
data, cancel/replace, mass status) with values the test chooses."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

from engine.venues.fix import FixSession, Message, MsgType, Role, SessionConfig, Tag
from engine.venues.fix.store import SessionStore
from engine.venues.fixio.driver import FixConnection

WAIT = 10.0  # seconds any single step may take on a loaded machine before the test fails


def wait_for(predicate: Any, what: str) -> None:
    """Wait (blocking, polling) until `predicate()` holds; fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class NetLoop:
    """An event loop in a daemon thread; `run(coro)` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-net", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def call(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


class Proxy:
    """Forwards bytes between a client and `target_port`; `blackhole` swallows what the
    server sends (answers lost in flight), `drop()` cuts every connection at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.blackhole = False
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.base_events.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()

    def drop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [client_w, server_w]
        await asyncio.gather(self._pipe(client_r, server_w, False), self._pipe(server_r, client_w, True),
                             return_exceptions=True)
        client_w.close()
        server_w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, down: bool) -> None:
        try:
            while data := await reader.read(65536):
                if down and self.blackhole:
                    continue
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


class ScriptedVenue:
    """A small FIX 4.4 acceptor (our session and driver) answering per the contract.

    Instruments: BTC/USD (tick 0.5, lot 0.001, min 0.002, max 5, min notional 10, fees
    1.5 / 4 bps) and ETH/USD. A limit order priced at or above `cross_at` (buy) fills at
    once at its price with Commission 0.25, LastLiquidityInd 2, TradeID T-<cid>; others rest.
    The state of each order is in `orders` (the test may change it while the line is down);
    `park` queues an ER for the counterparty's next Logon, delivered by resend.
    """

    def __init__(self) -> None:
        self.store = SessionStore()
        self.orders: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}
        self.received: list[Message] = []
        self.connection: FixConnection | None = None
        self.md_req_id: str | None = None
        self.cross_at = 100.0
        self.hold_cancels = False  # True: an F is kept in `held`, unanswered, for the test to answer
        self.held: list[Message] = []
        self.logons = 0
        self._exec = 0
        self._server: asyncio.base_events.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()

    def drop(self) -> None:
        if self.connection is not None:
            self.connection.abort()

    def _accept(self) -> FixConnection:
        session = FixSession(SessionConfig("VENUE"), Role.ACCEPTOR, store_for=lambda sender: self.store)
        self.connection = FixConnection(session, on_message=self._handle, on_event=self._event)
        return self.connection

    def _event(self, event: Any) -> None:
        if event.kind == "logged_on":
            self.logons += 1

    def send(self, msg_type: str, body: list[tuple[int, Any]]) -> None:
        assert self.connection is not None
        self.connection.send(msg_type, body)

    def _exec_id(self) -> str:
        self._exec += 1
        return f"X{self._exec}"

    def er(self, cid: str, exec_type: str, *, wire: str | None = None, last: tuple[str, str] | None = None,
           extra: list[tuple[int, Any]] = ()) -> list[tuple[int, Any]]:
        o = self.orders[cid]
        leaves = "0" if o["status"] in ("2", "4", "8", "C") else str(round(o["qty"] - o["cum"], 8))
        body: list[tuple[int, Any]] = [
            (Tag.OrderID, f"V-{cid}"), (Tag.ClOrdID, wire or cid), (Tag.ExecID, self._exec_id()),
            (Tag.ExecType, exec_type), (Tag.OrdStatus, o["status"]), (Tag.Symbol, o["symbol"]),
            (Tag.Side, o["side"]), (Tag.OrderQty, str(o["qty"])), (Tag.Price, str(o["price"])),
            (Tag.LeavesQty, leaves), (Tag.CumQty, str(o["cum"])), (Tag.AvgPx, str(o["avg"])),
        ]
        if last is not None:
            body += [(Tag.LastPx, last[0]), (Tag.LastQty, last[1]), (12, "0.25"), (13, "3"), (851, "2"),
                     (1003, f"T-{cid}")]
        return body + list(extra)

    def park(self, body: list[tuple[int, Any]], now: float) -> int:
        return self.store.park("8", body, now)

    def _handle(self, msg: Message) -> None:
        self.received.append(msg)
        kind = msg.msg_type
        if kind == "x":
            self.send("y", [
                (320, msg.get(320)), (322, "R1"), (560, "0"), (393, "2"), (893, "Y"), (146, "2"),
                (55, "BTC/USD"), (207, "scripted"), (969, "0.5"), (561, "0.001"), (562, "0.002"), (1140, "5"),
                (20001, "10"), (20003, "1.5"), (20004, "4"),
                (55, "ETH/USD"), (207, "scripted"), (969, "0.01"), (561, "0.01"), (562, "0.01"),
                (20003, "1.5"), (20004, "4"),
            ])
        elif kind == "V":
            self.md_req_id = msg.get(262)
            for symbol in msg.get_all(55):
                bid, ask = (99.0, 101.0) if symbol == "BTC/USD" else (9.0, 11.0)
                self.send("W", [(262, self.md_req_id), (55, symbol), (207, "scripted"), (268, "3"),
                                (269, "0"), (270, str(bid)), (271, "2"), (346, "3"),
                                (269, "0"), (270, str(bid - 0.5)), (271, "4"), (346, "1"),
                                (269, "1"), (270, str(ask)), (271, "1.5"), (346, "2")])
        elif kind == "D":
            cid = msg.get(11)
            price = float(msg.get(44) or 0)
            self.orders[cid] = {"symbol": msg.get(55), "side": msg.get(54), "qty": float(msg.get(38)),
                                "price": price, "cum": 0.0, "avg": 0.0, "status": "0"}
            self.send("8", self.er(cid, "0"))
            if price >= self.cross_at:
                o = self.orders[cid]
                o.update(cum=o["qty"], avg=price, status="2")
                self.send("8", self.er(cid, "F", last=(str(price), str(o["qty"]))))
        elif kind == "G":
            orig = msg.get(41)
            cid = self.aliases.get(orig, orig)
            o = self.orders[cid]
            o.update(qty=float(msg.get(38)), price=float(msg.get(44)))
            self.aliases[msg.get(11)] = cid
            self.send("8", self.er(cid, "5", wire=msg.get(11), extra=[(41, orig)]))
        elif kind == "F" and self.hold_cancels:
            self.held.append(msg)
        elif kind == "H":
            wire = msg.get(11)
            cid = self.aliases.get(wire, wire)
            extra = [(790, msg.get(790))] if msg.get(790) else []
            if cid not in self.orders:
                self.send("8", [(37, "NONE"), (11, wire), (17, self._exec_id()), (150, "I"), (39, "8"),
                                (55, "NA"), (54, "1"), (151, "0"), (14, "0"), (6, "0"),
                                (58, f"order {wire!r} is not known"), *extra])
            else:
                self.send("8", self.er(cid, "I", extra=extra))
        elif kind == "AF":
            working = [c for c, o in self.orders.items() if o["status"] in ("0", "1")]
            rid = msg.get(584)
            if not working:
                self.send("8", [(37, "NONE"), (11, "NONE"), (17, self._exec_id()), (150, "I"), (39, "8"),
                                (55, "NA"), (54, "1"), (151, "0"), (14, "0"), (6, "0"), (584, rid),
                                (911, "0"), (912, "Y")])
            for i, cid in enumerate(working):
                self.send("8", self.er(cid, "I", extra=[(584, rid), (911, str(len(working))),
                                                        (912, "Y" if i == len(working) - 1 else "N")]))
        else:
            self.send("j", [(45, str(msg.seq_num)), (372, kind), (380, "3"), (58, f"MsgType {kind} is not supported")])


__all__ = ["MsgType", "NetLoop", "Proxy", "ScriptedVenue", "WAIT", "wait_for"]
