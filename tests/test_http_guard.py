"""``RequestGuard``'s load shedding and error envelope, in front of a real ASGI app whose
handler the test holds open: the cap on requests in flight, first-come-first-served
waiting, a fast 503 with Retry-After at the queue timeout, and no slot lost to a client
that leaves while waiting."""

import asyncio
import time

import httpx
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.http_guard import RequestGuard

pytestmark = pytest.mark.unit


class Echo(BaseModel):
    n: int


class HeldApp:
    """An ASGI app whose ``/echo`` answers only when the test releases it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.order: list[int] = []

    async def echo(self, request):
        n = (await request.json())["n"]
        await self.release.wait()
        self.order.append(n)
        return JSONResponse({"n": n})

    def guarded(self, max_in_flight: int, queue_timeout_ms: float) -> RequestGuard:
        app = Starlette(routes=[Route("/echo", self.echo, methods=["POST"])])
        return RequestGuard(app, {"/echo": Echo}, max_in_flight, queue_timeout_ms, max_body_bytes=1000)


async def post(client: httpx.AsyncClient, n) -> httpx.Response:
    return await client.post("/echo", json={"n": n})


def client_of(guard: RequestGuard) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://guarded")


async def until(condition, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the guard"
        await asyncio.sleep(0.001)


def test_past_the_cap_a_request_waits_then_gets_a_fast_503_with_retry_after():
    async def scenario():
        held = HeldApp()
        guard = held.guarded(max_in_flight=2, queue_timeout_ms=50)
        async with client_of(guard) as client:
            running = [asyncio.create_task(post(client, n)) for n in (1, 2)]
            await until(lambda: guard.in_flight == 2)
            started = time.perf_counter()
            shed = await post(client, 3)
            waited = time.perf_counter() - started
            held.release.set()
            answered = await asyncio.gather(*running)
        return guard, shed, waited, answered

    guard, shed, waited, answered = asyncio.run(scenario())
    assert shed.status_code == 503 and shed.headers["Retry-After"] == "1"
    assert shed.json()["status"] == 503 and "overloaded" in shed.json()["error"]
    assert 0.04 <= waited < 1.0  # it waited for the queue timeout, not for the held requests
    assert [r.status_code for r in answered] == [200, 200] and guard.shed == 1 and guard.in_flight == 0


def test_waiters_get_freed_slots_in_arrival_order():
    async def scenario():
        held = HeldApp()
        guard = held.guarded(max_in_flight=1, queue_timeout_ms=2000)
        async with client_of(guard) as client:
            tasks = []
            for n in range(4):
                tasks.append(asyncio.create_task(post(client, n)))
                await until(lambda n=n: guard.in_flight + len(guard._waiters) == n + 1)
            held.release.set()
            answers = await asyncio.gather(*tasks)
        return guard, held, answers

    guard, held, answers = asyncio.run(scenario())
    assert [a.status_code for a in answers] == [200] * 4 and held.order == [0, 1, 2, 3]
    assert guard.in_flight == 0 and not guard._waiters


def test_a_client_leaving_while_it_waits_loses_no_slot():
    async def scenario():
        held = HeldApp()
        guard = held.guarded(max_in_flight=1, queue_timeout_ms=2000)
        async with client_of(guard) as client:
            first = asyncio.create_task(post(client, 1))
            await until(lambda: guard.in_flight == 1)
            leaving = asyncio.create_task(post(client, 2))
            await until(lambda: len(guard._waiters) == 1)
            leaving.cancel()
            await asyncio.gather(leaving, return_exceptions=True)
            held.release.set()
            await first
            again = await post(client, 3)  # the slot came back: served, not shed
        return guard, again

    guard, again = asyncio.run(scenario())
    assert again.status_code == 200 and guard.in_flight == 0 and guard.shed == 0


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [(b"{not json", 400, None), (b'{"n": "x"}', 400, "n"), (b"[]", 400, None), (b"", 400, None)],
)
def test_bad_bodies_get_the_error_envelope_before_any_slot(body, status, field):
    async def scenario():
        held = HeldApp()
        guard = held.guarded(max_in_flight=1, queue_timeout_ms=50)
        async with client_of(guard) as client:
            response = await client.post("/echo", content=body, headers={"Content-Type": "application/json"})
        return guard, response

    guard, response = asyncio.run(scenario())
    assert response.status_code == status and response.json()["status"] == status
    assert response.json()["field"] == field and guard.in_flight == 0
    if body.startswith(b"{not"):
        assert "not valid JSON" in response.json()["error"]
