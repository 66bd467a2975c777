"""Replay a day of logs against the serving tier: the requests the day's events imply, at
a fixed rate or at the log's own time profile sped up.

Each event of the day (``training_examples`` of the warehouse, ordered by ``event_ts``)
becomes one request: ``/recommend`` (the user and the event's context, k=10),
``/predict`` (the event's request features) or ``/bid`` (an OpenRTB request for the
user, the event's item and context, for ``--campaign``). With ``--speedup S`` the
request of an event at ``t`` seconds after midnight is sent ``t / S`` seconds after the
start (1440: the day in a minute); with ``--rate R`` they are sent R per second. Sending
is open loop (``bench/serving_load.py``: latency from the scheduled time) and bounded by
``--max-seconds`` and ``--max-requests``.

Against a running service (``--url http://127.0.0.1:3001``, e.g. ``make serve``), or,
without ``--url``, a service started here as ``bench/serving.py`` does (the pinned
model of ``make run``, a Redis or embedded online store published from the warehouse,
the source's campaigns). Prints one JSON line: requests, duration, achieved rate, status
counts, p50 / p99 of the answered requests, and for ``/bid`` the no-bid share.

Usage: ``python bench/replay.py [--day YYYY-MM-DD] [--endpoint recommend|predict|bid]
(--rate R | --speedup S) [--max-seconds 60] [--max-requests 20000] [--url URL]
[--store redis|embedded] [--campaign ID]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _bench_serving():
    """bench/serving.py (the service and the load generator), loaded under its own name:
    ``serving`` is the project's package."""
    spec = importlib.util.spec_from_file_location("bench_serving", Path(__file__).resolve().parent / "serving.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serving_bench = _bench_serving()

ROUTES = {"recommend": "/recommend", "predict": "/predict", "bid": "/bid"}
DERIVED = ("hour_of_day", "day_of_week")  # the service derives them from the request time


def day_events(warehouse: str, spec, day: str | None) -> tuple[str, list[dict[str, Any]]]:
    """(the day, its events in time order: ``seconds`` after midnight + request features)."""
    import duckdb

    from serving.online_store import json_native

    columns = list(spec.request_features)
    with duckdb.connect(warehouse, read_only=True) as connection:
        day = day or str(connection.execute("select max(event_date) from training_examples").fetchone()[0])
        quoted = ", ".join(f'"{c}"' for c in columns)
        rows = connection.execute(
            f"""select epoch(event_ts) - epoch(cast(event_date as timestamp)) as seconds, {quoted}
                from training_examples where event_date = ? order by event_ts, event_id""",
            [day],
        ).fetchall()
    return day, [
        {"seconds": float(r[0]), **{c: json_native(v) for c, v in zip(columns, r[1:], strict=True)}} for r in rows
    ]


def request_body(endpoint: str, event: dict[str, Any], spec, campaign: str | None, index: int) -> dict[str, Any]:
    """The request an event implies at ``endpoint``."""
    context = {c.name: event[c.name] for c in spec.role_columns("context")}
    if endpoint == "recommend":
        return {"user_id": str(event["user_id"]), "k": serving_bench.K, "context": context}
    if endpoint == "predict":
        return {"rows": [{name: event[name] for name in spec.request_features}]}
    imp = {"id": "1", "ext": {"context": {k: v for k, v in context.items() if k not in DERIVED}}}
    if "item_id" in event:
        imp["ext"]["item_id"] = str(event["item_id"])
    body = {"id": f"replay-{index}", "imp": [imp], "user": {"id": str(event.get("user_id", f"anon-{index}"))}}
    return {**body, "ext": {"campaign_id": campaign}}


def schedule(events: list[dict[str, Any]], rate: float | None, speedup: float | None) -> list[float]:
    """Send offsets (seconds from the start): ``i / rate``, or event time / ``speedup``."""
    if rate:
        return [i / rate for i in range(len(events))]
    start = events[0]["seconds"] if events else 0.0
    return [(event["seconds"] - start) / speedup for event in events]


def replay(
    base_url: str,
    bodies: list[dict[str, Any]],
    offsets: list[float],
    endpoint: str,
    max_seconds: float,
) -> dict[str, Any]:
    """Send ``bodies`` at ``offsets`` (open loop, bounded by ``max_seconds``); the summary."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bodies.jsonl"
        path.write_text("".join(json.dumps(body) + "\n" for body in bodies))
        phase = {"path": ROUTES[endpoint], "offsets": offsets, "seconds": max_seconds, "bodies": str(path)}
        result = serving_bench.generate(base_url, [phase], min_connections=4)
    status, latency, scheduled = result["status"], result["latency_ms"], result["scheduled_s"]
    answered = (status >= 200) & (status < 300)
    duration = float(result["done_s"].max()) if len(status) else 0.0
    counts = {str(code): int((status == code).sum()) for code in sorted(set(status.tolist()))}
    return {
        "benchmark": "replay",
        "endpoint": endpoint,
        "requests": int(len(status)),
        "seconds": round(duration, 2),
        "rps_achieved": round(float(answered.sum()) / duration, 1) if duration else 0.0,
        "statuses": counts,
        "p50_ms": round(float(np.percentile(latency[answered], 50)), 2) if answered.any() else None,
        "p99_ms": round(float(np.percentile(latency[answered], 99)), 2) if answered.any() else None,
        "no_bid_share": round(float((status == 204).sum()) / max(1, int(answered.sum())), 4)
        if endpoint == "bid"
        else None,
        "scheduled_s": scheduled.tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", default=None, help="the day to replay (default: the newest of training_examples)")
    parser.add_argument("--endpoint", choices=sorted(ROUTES), default="recommend")
    pace = parser.add_mutually_exclusive_group(required=True)
    pace.add_argument("--rate", type=float, help="requests per second")
    pace.add_argument("--speedup", type=float, help="the log's own time profile, this many times faster")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--url", default=None, help="a running service; default: start one here")
    parser.add_argument("--store", choices=("embedded", "redis"), default="embedded")
    parser.add_argument(
        "--campaign", default=None, help="/bid: the campaign (default: the first of the campaigns file)"
    )
    args = parser.parse_args()

    from reclake.runtime import configure_process

    configure_process()
    from reclake.settings import load_settings
    from serving.bidding import load_campaigns

    settings = load_settings()
    spec = settings.load_feature_spec()
    day, events = day_events(settings.warehouse_path, spec, args.day)
    events = events[: args.max_requests]
    campaign = args.campaign
    if args.endpoint == "bid" and campaign is None:
        if not settings.campaigns_file:
            raise SystemExit(f"no campaigns for source {settings.source}: set the campaigns setting")
        campaign = next(iter(load_campaigns(settings.campaigns_file)))
    bodies = [request_body(args.endpoint, event, spec, campaign, i) for i, event in enumerate(events)]
    offsets = schedule(events, args.rate, args.speedup)
    serving_bench.log(f"replaying {len(bodies)} events of {day} to {args.endpoint}")
    with contextlib.ExitStack() as stack:
        base_url = args.url or stack.enter_context(_service(settings, spec, args.store))
        line = replay(base_url, bodies, offsets, args.endpoint, args.max_seconds)
    line.pop("scheduled_s")
    serving_bench.emit({**line, "day": day, "rate": args.rate, "speedup": args.speedup, "cores": serving_bench.cores()})


@contextlib.contextmanager
def _service(settings, spec, store: str):
    """The pinned model of ``make run`` served here (as bench/serving.py serves it)."""
    from serving.config import serving_environment
    from serving.online_store import open_store
    from serving.redis_server import running_redis

    tag = settings.current_model_tag_file.read_text().strip()
    entities, _, _ = serving_bench.read_warehouse(settings.warehouse_path, spec)
    folder = Path(tempfile.mkdtemp(prefix="reclake-replay-"))
    try:
        home = folder / "bentoml"
        serving_bench.copy_model(Path(settings.bentoml_home), tag, home)
        with contextlib.ExitStack() as stack:
            store_url = stack.enter_context(running_redis()) if store == "redis" else str(folder / "online.sqlite")
            with open_store(store_url) as online:
                online.publish(spec.source, f"replay-{dt.datetime.now(dt.UTC):%H%M%S}", entities)
            environment = serving_environment(home, tag, online_store_url=store_url, campaigns=settings.campaigns_file)
            base_url, _ = stack.enter_context(
                serving_bench.running_service(tag, home, environment, folder / "serve.log")
            )
            yield base_url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
