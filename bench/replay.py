"""Replay a day of logs against the serving tier: the requests the day's events imply, at
a fixed rate or at the log's own time profile sped up, with a bounded duration.

Each event of the day (``training_examples`` of the warehouse, ordered by ``event_ts``;
by default the newest day, the held-out one) becomes one request, built as
``bench/serving.py`` builds its load (``request_body``): ``/recommend`` (the user and the
event's context, k=10), ``/predict`` (the event's request features) or ``/bid`` (an
OpenRTB request for the user, the event's item and context, for ``--campaign``). With
``--speedup S`` the request of an event at ``t`` seconds after the day's start (UTC
midnight) is sent ``t / S`` seconds after the replay starts (1440: the day in a minute);
with ``--rate R``, R per second in the events' order. Sending is open loop
(``bench/serving_load.py``: latency from the scheduled time, 2 s client timeout) and
bounded: no request is scheduled past ``--max-seconds`` (so the replay ends by then plus
the client timeout) and at most the day's first ``--max-requests`` events are sent.

Against a running service (``--url http://127.0.0.1:3001``, e.g. ``make serve``: its
campaigns; ``--campaign`` defaults to the first it lists), or, without ``--url``, a
service started here by ``bench/serving.py``'s ``bench_service`` (the pinned model of
``make run``, a Redis or embedded online store published from the warehouse, the source's
campaigns and the bench's: ``--campaign`` defaults to the source's first, e.g.
``synthetic_constant``, whose budget binds: once spent, the answers are 204; the bench's
``bench_linear`` has a budget no replay spends).

Prints one JSON line: ``events`` (of the day), ``requests`` (sent), ``seconds`` (from the
start to the last answer), ``rps_sent`` (requests / the span of their send times),
``rps_achieved`` (2xx answers / ``seconds``), ``statuses`` (count per HTTP status; 0: a
timeout, -1: a connection error), ``errors`` (all but 2xx), ``p50_ms`` / ``p99_ms`` (of the
2xx answers, from the scheduled send time), ``send_lag_p99_ms`` (how late the client sent),
and for ``/bid`` ``no_bid_share`` (204s among the answers), ``bids`` and
``bid_price_total`` (the sum of the bids' CPM prices; / 1000: what they would cost).

Usage: ``python bench/replay.py [--day YYYY-MM-DD] [--endpoint recommend|predict|bid]
(--rate R | --speedup S) [--max-seconds 60] [--max-requests 20000] [--url URL]
[--store redis|embedded] [--workers N] [--campaign ID]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _bench_serving():
    """bench/serving.py (the service, the request bodies and the load generator), loaded
    under the name ``bench_serving`` (``serving`` is the project's package)."""
    if "bench_serving" in sys.modules:
        return sys.modules["bench_serving"]
    spec = importlib.util.spec_from_file_location("bench_serving", Path(__file__).resolve().parent / "serving.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_serving"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["bench_serving"]
        raise
    return module


serving_bench = _bench_serving()

ROUTES = serving_bench.ROUTES
DERIVED = serving_bench.DERIVED_CONTEXT
MAX_SECONDS = 60.0
MAX_REQUESTS = 20_000


def day_events(warehouse: str, spec, day: str | None) -> tuple[str, list[dict[str, Any]]]:
    """(the day, its events in time order: ``seconds`` after midnight + request features);
    ``day`` None: the newest ``event_date`` of ``training_examples``."""
    import duckdb

    from serving.online_store import json_native

    columns = list(spec.request_features)
    with duckdb.connect(warehouse, read_only=True) as connection:
        day = day or str(connection.execute("select max(event_date) from training_examples").fetchone()[0])
        quoted = ", ".join(f'"{c}"' for c in columns)
        rows = connection.execute(
            f"""select epoch(event_ts) - epoch(cast(event_date as timestamp)) as seconds, {quoted}
                from training_examples where event_date = cast(? as date) order by event_ts, event_id""",
            [day],
        ).fetchall()
    return day, [
        {"seconds": float(r[0]), **{c: json_native(v) for c, v in zip(columns, r[1:], strict=True)}} for r in rows
    ]


def request_body(endpoint: str, event: dict[str, Any], spec, campaign: str | None, index: int) -> dict[str, Any]:
    """The request an event implies at ``endpoint`` (``/bid``: for ``campaign``)."""
    return serving_bench.request_body(endpoint, spec, event, campaign, f"replay-{index}")


def schedule(
    events: list[dict[str, Any]], rate: float | None, speedup: float | None, origin: float | None = None
) -> list[float]:
    """Send offsets (seconds from the start): ``i / rate``, or (event time - ``origin``) /
    ``speedup``; ``origin`` None: the first event's time (it is sent at once); 0.0: the
    day's start (the replay keeps the day's time profile from midnight)."""
    if rate:
        return [i / rate for i in range(len(events))]
    if not speedup or speedup <= 0:
        raise ValueError("give a positive rate or speedup")
    start = (events[0]["seconds"] if events else 0.0) if origin is None else origin
    return [max(0.0, event["seconds"] - start) / speedup for event in events]


def replay(
    base_url: str,
    bodies: list[dict[str, Any]],
    offsets: list[float],
    endpoint: str,
    max_seconds: float,
    max_requests: int | None = None,
) -> dict[str, Any]:
    """Send ``bodies`` at ``offsets`` (open loop; none scheduled at or past ``max_seconds``,
    at most ``max_requests``); the summary, with each request's ``scheduled_s`` and
    ``sent_s`` (offsets from the start: planned and actual)."""
    if len(bodies) != len(offsets):
        raise ValueError(f"{len(bodies)} bodies but {len(offsets)} offsets")
    if max_requests is not None:
        bodies, offsets = bodies[:max_requests], offsets[:max_requests]
    if not bodies:
        raise ValueError("nothing to replay")
    with tempfile.TemporaryDirectory(prefix="reclake-replay-") as folder:
        path = Path(folder) / "bodies.jsonl"
        path.write_text("".join(json.dumps(body) + "\n" for body in bodies))
        phase = {"path": ROUTES[endpoint], "offsets": offsets, "seconds": max_seconds, "bodies": str(path)}
        result = serving_bench.generate(base_url, [phase], min_connections=4, capture_price=endpoint == "bid")
    status, latency, sent = result["status"], result["latency_ms"], result["sent_s"]
    answered = (status >= 200) & (status < 300)
    duration = float(result["done_s"].max()) if len(status) else 0.0
    span = float(sent.max() - sent.min()) if len(sent) > 1 else 0.0
    line = {
        "benchmark": "replay",
        "endpoint": endpoint,
        "requests": int(len(status)),
        "seconds": round(duration, 2),
        "rps_sent": round((len(status) - 1) / span, 1) if span > 0 else None,
        "rps_achieved": round(float(answered.sum()) / duration, 1) if duration else 0.0,
        "statuses": {str(code): int((status == code).sum()) for code in sorted(set(status.tolist()))},
        "errors": int((~answered).sum()),
        "p50_ms": serving_bench.percentile(latency[answered], 50),
        "p99_ms": serving_bench.percentile(latency[answered], 99),
        "send_lag_p99_ms": result["send_lag_p99_ms"],
        "no_bid_share": None,
        "bids": None,
        "bid_price_total": None,
        "scheduled_s": result["scheduled_s"].tolist(),
        "sent_s": sent.tolist(),
    }
    if endpoint == "bid":
        prices = result["price"][np.isfinite(result["price"])]
        line["no_bid_share"] = round(float((status == 204).sum()) / max(1, int(answered.sum())), 4)
        line["bids"] = int(len(prices))
        line["bid_price_total"] = round(float(prices.sum()), 6)
    return line


def replay_day(
    base_url: str,
    warehouse: str,
    spec,
    endpoint: str,
    *,
    day: str | None = None,
    rate: float | None = None,
    speedup: float | None = None,
    max_seconds: float = MAX_SECONDS,
    max_requests: int = MAX_REQUESTS,
    campaign: str | None = None,
) -> dict[str, Any]:
    """The day's first ``max_requests`` events of ``warehouse`` replayed against the service
    at ``base_url`` (at ``rate``, or at the day's profile from midnight sped up
    ``speedup`` times), for at most ``max_seconds``; the summary line."""
    if (rate is None) == (speedup is None):
        raise ValueError("give one of rate and speedup")
    if endpoint == "bid" and not campaign:
        raise ValueError("a /bid replay needs a campaign")
    day, events = day_events(warehouse, spec, day)
    if not events:
        raise ValueError(f"no events on {day} in training_examples of {warehouse}")
    chosen = events[:max_requests]
    bodies = [request_body(endpoint, event, spec, campaign, i) for i, event in enumerate(chosen)]
    offsets = schedule(chosen, rate, speedup, origin=0.0)
    due = sum(1 for offset in offsets if offset < max_seconds)
    serving_bench.log(f"replaying {due} of the {len(events)} events of {day} to {ROUTES[endpoint]} "
                      f"(at most {max_requests}, none after {max_seconds:g} s)")  # fmt: skip
    line = replay(base_url, bodies, offsets, endpoint, max_seconds)
    return {
        **line,
        "day": day,
        "events": len(events),
        "rate": rate,
        "speedup": speedup,
        "max_seconds": max_seconds,
        "max_requests": max_requests,
        "campaign": campaign if endpoint == "bid" else None,
    }


@contextlib.contextmanager
def _service(settings, spec, store: str, workers: int):
    """The pinned model of ``make run`` served here, as bench/serving.py serves it, with the
    source's and the bench's campaigns; yields (base URL, the campaign to bid for by
    default: the source's first, else ``bench_linear``)."""
    from serving.bidding import load_campaigns

    tag_file = settings.current_model_tag_file
    if not tag_file.is_file():
        raise SystemExit(f"{tag_file} is missing: run `make run` first")
    tag = tag_file.read_text().strip()
    entities, held_out, _ = serving_bench.read_warehouse(settings.warehouse_path, spec)
    folder = Path(tempfile.mkdtemp(prefix="reclake-replay-"))
    try:
        item = serving_bench.popular_item(held_out)
        campaigns = serving_bench.bench_campaigns_file(folder, item, settings.campaigns_file)
        with serving_bench.bench_service(
            settings, spec, tag, store, folder, entities, workers=workers, campaigns=campaigns
        ) as served:
            source = load_campaigns(settings.campaigns_file) if settings.campaigns_file else {}
            yield served.base_url, next(iter(source), serving_bench.BENCH_LINEAR)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _day(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day YYYY-MM-DD, got {text!r}") from None


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", type=_day, default=None, help="the day to replay (default: the newest)")
    parser.add_argument("--endpoint", choices=sorted(ROUTES), default="recommend")
    pace = parser.add_mutually_exclusive_group(required=True)
    pace.add_argument("--rate", type=_positive, help="requests per second")
    pace.add_argument("--speedup", type=_positive, help="the log's own time profile, this many times faster")
    parser.add_argument("--max-seconds", type=_positive, default=MAX_SECONDS, help="no request scheduled after")
    parser.add_argument("--max-requests", type=int, default=MAX_REQUESTS, help="the day's first N events at most")
    parser.add_argument(
        "--url", default=None, help="a running service (e.g. http://127.0.0.1:3001); default: start one"
    )
    parser.add_argument("--store", choices=("embedded", "redis"), default="embedded", help="without --url")
    parser.add_argument("--workers", type=int, default=serving_bench.cores(), help="without --url (default: cores)")
    parser.add_argument("--campaign", default=None, help="/bid: the campaign (default: see the docstring)")
    args = parser.parse_args()
    if args.max_requests < 1:
        parser.error("--max-requests must be at least 1")

    from reclake.settings import load_settings

    settings = load_settings()
    spec = settings.load_feature_spec()
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.url:
            base_url = args.url.rstrip("/")
            default_campaign = next(iter(serving_bench._model_info(base_url).get("campaigns") or []), None)
        else:
            base_url, default_campaign = stack.enter_context(_service(settings, spec, args.store, args.workers))
        campaign = args.campaign or default_campaign
        if args.endpoint == "bid" and not campaign:
            raise SystemExit("the service bids for no campaign: configure campaigns (RECLAKE_CAMPAIGNS)")
        line = replay_day(
            base_url, settings.warehouse_path, spec, args.endpoint, day=args.day, rate=args.rate,
            speedup=args.speedup, max_seconds=args.max_seconds, max_requests=args.max_requests, campaign=campaign,
        )  # fmt: skip
    line.pop("scheduled_s")
    line.pop("sent_s")
    serving_bench.log(f"done in {time.monotonic() - started:.0f} s, service start-up included")
    serving_bench.emit(
        {**line, "url": args.url, "online_store": None if args.url else args.store, "cores": serving_bench.cores()}
    )


if __name__ == "__main__":
    main()
