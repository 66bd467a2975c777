"""Open-loop HTTP load generator for ``bench/serving.py`` (a process of its own).

Requests are sent at fixed arrival times, ``t0 + i / rate`` within each phase, whatever
the responses do (open loop: a slow server does not slow the arrivals down). Each
request's latency is measured from its *scheduled* send time, so time spent waiting in
the client (for a connection, or behind a busy event loop) counts: no coordinated
omission. Each request has a deadline (``timeout_s`` after its scheduled time); a
request past it is a timeout (status 0) and its connection is dropped.

The client is a minimal HTTP/1.1 one on raw asyncio streams (uvloop when installed):
keep-alive connections in a pool (``min_connections`` opened up front, used in turn),
one request at a time per connection, more opened on demand up to ``max_connections``. It is light on purpose: on a
small machine the client shares the cores with the server, and its CPU time is reported
(``client_cpu_s``) so results stay interpretable.

Input: a JSON plan on stdin::

    {"host": "127.0.0.1", "port": 3000, "timeout_s": 2.0, "max_connections": 256,
     "min_connections": 8, "workers": 2, "capture_version": false, "capture_price": false,
     "close_connections": false, "phases": [{"path": "/recommend", "rate": 100, "seconds": 20, "bodies": "<file>"}]}

``close_connections`` sends each request on a connection of its own (``Connection:
close``): the workers share the listening socket and a keep-alive pool opened at once
tends to land on one of them, while fresh connects go to whichever is idle. ``workers``
(the server's worker processes) spreads the ``min_connections`` evenly over them, as a
load balancer would (``Pool.prefill``); the result's ``worker_connections`` says how.
``bodies`` is a file of request bodies, one JSON document a line, cycled through. A
phase may give ``"offsets"`` (seconds from the phase's start, one per body, in order)
instead of ``"rate"``: a replayed time profile (``bench/replay.py``); offsets past
``seconds`` are not sent.
Output: one JSON document on stdout, per request (in schedule order) ``phase``,
``scheduled_s`` (offset from the start of the run), ``done_s`` (completion offset),
``latency_ms``, ``sent_latency_ms`` (from the actual send), ``status`` (the HTTP
status; 0: timed out; -1: connection error) and, with ``capture_version``, ``version``
(the response's ``model_version``), with ``capture_price``, ``price`` (a 200 ``/bid``
answer's total bid price; None for other answers), and ``sent_s`` (when the request
actually left, as an offset from the start); plus ``client_cpu_s``, ``send_lag_p50_ms`` /
``send_lag_p99_ms`` (how late requests left the client compared to their schedule: high
means the client itself was saturated), ``connections`` (most open at once) and
``t0_unix`` (the wall-clock time offsets count from).

Usage: ``python bench/serving_load.py < plan.json > result.json``
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import resource
import sys
import time
from collections import deque
from dataclasses import dataclass, field

TIMEOUT, CONNECTION_ERROR = 0, -1
VERSION_MARK = b'"model_version":"'


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ConnectionClosed(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True
        self.served = 0  # responses read on it so far

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        self.writer.write(payload)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError) as error:
            # Nothing came back: on a reused connection the server closed it while idle
            # (keep-alive timeout) and never read the request, so it may be sent again.
            raise ConnectionClosed(self.served) from error
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                self.reusable = False
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(part[:-2] for part in parts)
        elif length is not None:
            body = await self.reader.readexactly(length)
        elif status in (204, 304) or 100 <= status < 200:  # no body by definition (RFC 9110)
            body = b""
        else:  # no length: the body runs to the end of the connection
            body = await self.reader.read()
            self.reusable = False
        self.served += 1
        return status, body

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass
class Pool:
    host: str
    port: int
    max_connections: int
    idle: deque = field(default_factory=deque)
    opened: int = 0
    peak_open: int = 0
    balance: dict = field(default_factory=dict)  # worker pid -> connections opened up front
    waiters: deque = field(default_factory=deque)

    async def acquire(self) -> Connection:
        if self.idle:
            return self.idle.popleft()  # FIFO: the requests rotate over every open connection
        if self.opened < self.max_connections:
            self.opened += 1
            self.peak_open = max(self.peak_open, self.opened)
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except BaseException:
                self._closed()
                raise
            return Connection(reader, writer)
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # handed over just as we gave up
                self.release(waiter.result())
            raise

    def release(self, connection: Connection) -> None:
        if not connection.reusable:
            self.discard(connection)
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    def discard(self, connection: Connection) -> None:
        connection.close()
        self._closed()

    def _closed(self) -> None:
        self.opened -= 1
        # A waiter may now open a connection of its own: wake one with a fresh one.
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                asyncio.get_running_loop().create_task(self._open_for(waiter))
                return

    async def prefill(self, count: int, workers: int = 0) -> None:
        """Open ``count`` connections up front: the server's workers accept connections,
        not requests, so a few connections would pin the load to a few workers.

        With ``workers``, spread them evenly over the server's worker processes, as a load
        balancer in front of them would: each new connection asks ``/model_info`` which
        worker accepted it (``worker_pid``) and is closed and opened again while that
        worker already has its share; the pool then rotates over the workers in turn. A
        shared listening socket otherwise hands most connections opened at once to one
        worker, and the busiest worker would set the peak."""
        count = min(count, self.max_connections) - self.opened
        if not workers:
            for _ in range(count):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self.opened += 1
                self.idle.append(Connection(reader, writer))
            self.peak_open = max(self.peak_open, self.opened)
            return
        share = -(-count // workers)
        by_worker: dict[int, list[Connection]] = {}
        probe = f"POST /model_info HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: 0\r\n\r\n".encode()
        attempts = 0
        while sum(map(len, by_worker.values())) < count and attempts < 50 * count:
            attempts += 1
            connection = Connection(*await asyncio.open_connection(self.host, self.port))
            status, body = await connection.request(probe)
            pid = json.loads(body).get("worker_pid") if status == 200 else None
            if pid is None or len(by_worker.get(pid, ())) >= share:
                connection.close()
                await asyncio.sleep(0.005)  # let the other workers' loops reach accept()
                continue
            by_worker.setdefault(pid, []).append(connection)
        rotation = [c for group in itertools.zip_longest(*by_worker.values()) for c in group if c is not None]
        self.idle.extend(rotation)
        self.opened += len(rotation)
        self.balance = {str(pid): len(group) for pid, group in by_worker.items()}
        self.peak_open = max(self.peak_open, self.opened)

    async def _open_for(self, waiter: asyncio.Future) -> None:
        self.opened += 1
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as error:
            self.opened -= 1
            if not waiter.done():
                waiter.set_exception(error)
            return
        connection = Connection(reader, writer)
        if waiter.done():
            self.release(connection)
        else:
            waiter.set_result(connection)


def _bid_price(body: bytes) -> float | None:
    """The total price of the bids of an OpenRTB bid response (None: not one)."""
    try:
        answer = json.loads(body)
        return float(sum(bid["price"] for seat in answer["seatbid"] for bid in seat["bid"]))
    except (ValueError, KeyError, TypeError):
        return None


def _version(body: bytes) -> str | None:
    start = body.find(VERSION_MARK)
    if start < 0:
        return None
    start += len(VERSION_MARK)
    return body[start : body.find(b'"', start)].decode()


async def run(plan: dict) -> dict:
    loop = asyncio.get_running_loop()
    pool = Pool(plan["host"], int(plan["port"]), int(plan.get("max_connections", 256)))
    timeout_s = float(plan.get("timeout_s", 2.0))
    capture = bool(plan.get("capture_version"))
    capture_price = bool(plan.get("capture_price"))
    host_header = f"Host: {plan['host']}:{plan['port']}\r\n"
    if plan.get("close_connections"):  # a connection per request: each lands on whichever worker accepts it
        host_header += "Connection: close\r\n"

    schedule: list[tuple[int, float, bytes]] = []  # (phase, offset s, request bytes)
    offset = 0.0
    for index, phase in enumerate(plan["phases"]):
        with open(phase["bodies"], "rb") as handle:
            bodies = [line.rstrip(b"\n") for line in handle if line.strip()]
        payloads = [
            (
                f"POST {phase['path']} HTTP/1.1\r\n{host_header}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
            for body in bodies
        ]
        if "offsets" in phase:  # a replayed time profile: one request per offset, in body order
            offsets = [float(o) for o in phase["offsets"] if float(o) < float(phase["seconds"])]
            schedule += [(index, offset + o, payloads[i % len(payloads)]) for i, o in enumerate(offsets)]
        else:
            count = round(float(phase["rate"]) * float(phase["seconds"]))
            schedule += [(index, offset + i / float(phase["rate"]), payloads[i % len(payloads)]) for i in range(count)]
        offset += float(phase["seconds"])

    n = len(schedule)
    status = [TIMEOUT] * n
    done_s = [0.0] * n
    lag_s = [0.0] * n
    sent_ms = [0.0] * n  # latency from the actual send (excludes the client's own lateness)
    clock = time.perf_counter
    versions: list[str | None] = [None] * n
    prices: list[float | None] = [None] * n

    async def one(i: int, scheduled: float, payload: bytes) -> None:
        # `scheduled` is on the perf_counter clock (uvloop's loop.time() has 1 ms steps).
        sent = clock()
        lag_s[i] = sent - scheduled
        connection = None
        try:
            async with asyncio.timeout_at(loop.time() + scheduled + timeout_s - sent):
                connection = await pool.acquire()
                try:
                    code, body = await connection.request(payload)
                except ConnectionClosed as closed:
                    if not closed.args[0]:
                        raise
                    pool.discard(connection)  # an idle connection the server had closed: retry once
                    connection = None
                    connection = await pool.acquire()
                    code, body = await connection.request(payload)
            status[i] = code
            if capture and 200 <= code < 300:
                versions[i] = _version(body)
            if capture_price and code == 200:
                prices[i] = _bid_price(body)
            pool.release(connection)
        except TimeoutError:
            status[i] = TIMEOUT
            if connection is not None:
                pool.discard(connection)  # a response may still arrive on it
        except (OSError, ConnectionClosed, asyncio.IncompleteReadError, ValueError, IndexError):
            status[i] = CONNECTION_ERROR
            if connection is not None:
                pool.discard(connection)
        done_s[i] = clock() - t0
        sent_ms[i] = (done_s[i] - (sent - t0)) * 1000

    await pool.prefill(int(plan.get("min_connections", 0)), int(plan.get("workers", 0)))
    cpu_before = _cpu_s()
    t0 = clock() + 0.05
    t0_unix = time.time() + 0.05
    tasks = []
    i = 0
    while i < n:
        now = clock()
        due = t0 + schedule[i][1]
        if due > now:
            await asyncio.sleep(due - now)
            now = clock()
        while i < n and t0 + schedule[i][1] <= now:  # everything due (catches up if late)
            tasks.append(loop.create_task(one(i, t0 + schedule[i][1], schedule[i][2])))
            i += 1
    await asyncio.gather(*tasks)
    cpu = _cpu_s() - cpu_before
    while pool.idle:
        pool.idle.pop().close()

    lags = sorted(lag_s) if n else [0.0]
    return {
        "phase": [p for p, _, _ in schedule],
        "scheduled_s": [round(s, 6) for _, s, _ in schedule],
        "done_s": [round(d, 6) for d in done_s],
        "latency_ms": [round((done_s[k] - schedule[k][1]) * 1000, 3) for k in range(n)],
        "sent_latency_ms": [round(v, 3) for v in sent_ms],
        "sent_s": [round(lag_s[k] + schedule[k][1], 6) for k in range(n)],
        "status": status,
        "version": versions if capture else None,
        "price": prices if capture_price else None,
        "client_cpu_s": round(cpu, 2),
        "send_lag_p50_ms": round(lags[int(0.50 * (len(lags) - 1))] * 1000, 2),
        "send_lag_p99_ms": round(lags[int(0.99 * (len(lags) - 1))] * 1000, 2),
        "connections": pool.peak_open,
        "worker_connections": pool.balance,
        "t0_unix": t0_unix,
    }


def main() -> None:
    plan = json.load(sys.stdin)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(plan))
    else:
        result = uvloop.run(run(plan))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
