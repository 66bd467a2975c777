"""Benchmark: the online serving tier (``bentoml serve``) under open-loop HTTP load.

Serves the model ``make run`` pinned (``current_model_tag``), from a temporary copy of its
BentoML store, with the bench's own online store (``--store redis``: a redis-server
started here; ``embedded``: a SQLite file in a temporary folder) published from the
warehouse's ``user_features`` / ``item_features`` (plus each user's newest positive
items from ``fct_events`` as ``history``), under the source's namespace. Requests are
the held-out day of logs (the newest ``event_date`` of ``training_examples``):
``/recommend`` bodies ``{user_id, k: 10, context}``, ``/predict`` bodies of one row
(``spec.request_features``) and ``/bid`` OpenRTB requests (``bid_body``: ``user.id``, the
row's context in ``imp[0].ext.context`` but ``hour_of_day`` / ``day_of_week``, which the
service derives, the synthetic ``device`` as ``device.devicetype``, the row's item as
``imp[0].ext.item_id``), in a shuffled order. The service bids for the bench's own
campaigns (``bench_campaigns_file``, in its temporary folder, with the source's campaigns
beside them): the load's bids alternate between ``bench_linear`` (a ``linear`` campaign on
the held-out day's most frequent item) and ``bench_paced`` (``paced``, any item), both
with a budget no bench run can spend, so every answer is a bid or a genuine no-bid.

Load comes from ``bench/serving_load.py`` in a process of its own: an open-loop
generator (fixed arrival times, latency measured from the scheduled send time, 2 s client
timeout; see its docstring). Prints one JSON line per result on stdout (logs on stderr):

- ``"kind": "load"``, per endpoint and rate in ``--rates`` for ``--seconds``:
  ``rps_target``, ``rps_achieved`` (2xx responses/s), ``p50_ms`` / ``p99_ms`` (of the 2xx
  responses), ``errors`` = ``shed_503`` + ``other_errors`` (other statuses, timeouts and
  connection errors; ``timeouts`` counts the latter two), ``workers``, ``online_store``,
  ``cores``, ``client_cpu_s`` (the generator's CPU time), ``client_send_lag_p50_ms`` /
  ``client_send_lag_p99_ms`` (how late requests left the client: high means the client
  was saturated; ``p50_from_send_ms`` leaves that lateness out), ``server_cpu_s`` (every
  ``bentoml serve`` process; ``server_cpu_by_process_s`` per process: the split between
  workers), ``store_cpu_s`` (redis-server) and ``other_cpu_s`` (the rest of the
  machine's busy time: on a shared machine, other people's work); for ``/bid``, 204 (no
  bid) is an answer like 200, and ``no_bid_share`` is the 204s' share of the answers;
- ``"kind": "in_process"``, per endpoint: the same requests answered in this process
  by ``serving.scoring.ServedModel`` on the same store, one at a time, measured right
  after the lowest rate: ``graph_p50_ms`` (the full path: store reads, feature
  assembly, the SavedModel's signatures), ``signature_p50_ms`` (the signature calls
  alone: ``recommend_features``, or ``retrieve_features`` + ``rank`` for older exports,
  or ``rank``), and
  ``overhead_p50_ms`` = HTTP ``p50_ms`` at the lowest rate - ``graph_p50_ms``;
- with ``bid`` in ``--endpoints``, ``"kind": "budget"``: ``--budget-rate`` bids/s for
  ``--budget-seconds`` (default 200/s for 10 s) for ``bench_small_budget``, a ``linear``
  campaign whose budget (``SMALL_BUDGET``) runs out within a second or two, each request
  on a connection of its own so that every worker bids (``server_cpu_by_process_s``);
  then its spend counter, read from the store (``spend:<campaign>:<UTC day>``):
  ``spend``, ``budget``, ``budget_overspend`` = max(0, spend - budget) (the target: never
  more than one bid's cost, ``max_bid_cost``; ``within_one_bid``), ``bids`` (200s),
  ``no_bids`` (204s) and ``client_bid_cost`` (the answered prices / 1000: what the store
  should have counted);
- with ``--peak``, ``"kind": "overload"``, per endpoint: the peak (the highest rate with
  p99 <= 50 ms and no error; the sweep's best, refined by ``--peak-steps`` bisection
  runs), then 2x the peak for ``--seconds`` followed at once by ``--recovery-seconds`` at
  the lowest rate: ``goodput_rps`` (2xx/s in the burst), ``shed_share`` and
  ``p99_503_ms`` (how fast shedding answers), and the recovery after the burst:
  ``first_200_s`` (until a response 200 arrives) and ``recovered_s`` (until a 1 s
  window of requests is all 2xx with p99 under 2x the lowest rate's p99; target 5 s);
- with ``--swap``, ``"kind": "swap"``: 50 requests/s to ``/recommend`` for
  ``--swap-seconds`` while, after a third of it, the pinned tag file names a second
  version (the same SavedModel, another model_version) and the service hot-swaps:
  ``failed`` requests, ``swap_s`` (pin to the last answer of the old version),
  latencies before and during the swap.

Usage: ``python bench/serving.py [--store redis|embedded] [--workers N] [--rates 50,100,200,400,600]
[--seconds 20] [--endpoints recommend,predict,bid] [--peak] [--swap]`` (``make loadtest``:
``--store redis --endpoints recommend,predict,bid``; 60 s per rate for the headline
figure: ``--seconds 60``). About
(endpoints x rates x seconds) + 1 min; needs ``make run`` first.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from reclake.runtime import configure_process  # noqa: E402

configure_process()

import numpy as np  # noqa: E402

LOAD_GENERATOR = Path(__file__).resolve().parent / "serving_load.py"
STARTUP_TIMEOUT_S = 180
CLIENT_TIMEOUT_S = 2.0
K = 10
PEAK_P99_MS = 50.0
WARMUP_S = 3.0
IN_PROCESS_REQUESTS = 300
MAX_BODIES = 20_000
ROUTES = {"recommend": "/recommend", "predict": "/predict", "bid": "/bid"}
IN_PROCESS_ENDPOINTS = ("recommend", "predict")
DERIVED_CONTEXT = ("hour_of_day", "day_of_week")  # the service derives them from the request time
BENCH_LINEAR, BENCH_PACED, BENCH_SMALL_BUDGET = "bench_linear", "bench_paced", "bench_small_budget"
LOAD_CAMPAIGNS = (BENCH_LINEAR, BENCH_PACED)  # the load's bids alternate between them
UNSPENDABLE_BUDGET = 1e9  # no bench run comes near it: bids at most max_bid / 1000 each
SMALL_BUDGET = 0.2  # about 200 bids of the linear price (~0.001 each): spent in a second or two at 200/s


def log(message: str) -> None:
    print(f"[bench/serving] {message}", file=sys.stderr, flush=True)


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def percentile(values, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


# ---- data: the store's rows and the requests, from the warehouse ----------------------


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_warehouse(warehouse: str, spec) -> tuple[dict, list[dict], str]:
    """(store entities, held-out rows, held-out day) from the DuckDB warehouse."""
    import duckdb

    from serving.online_features import HISTORY_LENGTH, read_online_rows
    from serving.online_store import json_native

    with duckdb.connect(warehouse, read_only=True) as connection:
        entities = read_online_rows(connection, spec, HISTORY_LENGTH)  # what online_features publishes
        day = connection.execute("select max(event_date) from training_examples").fetchone()[0]
        columns = spec.request_features
        rows = connection.execute(
            f"select {', '.join(_quoted(c) for c in columns)} from training_examples where event_date = ?", [day]
        ).fetchall()
    held_out = [{c: json_native(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    return entities, held_out, str(day)


def _device_types() -> dict[str, int]:
    """The synthetic ``device`` value -> an OpenRTB device type the service maps back to it."""
    from serving.openrtb import DEVICE_TYPES

    return {name: code for code, name in sorted(DEVICE_TYPES.items(), reverse=True)}  # the lowest code wins


def bid_body(spec, row: dict[str, Any], campaign: str, request_id: str) -> dict[str, Any]:
    """The OpenRTB ``/bid`` request a logged row implies: one impression for ``campaign``,
    the row's context in ``imp[0].ext.context`` (but ``DERIVED_CONTEXT``), a ``device``
    the service understands as ``device.devicetype``, a floor column as ``imp[0].bidfloor``,
    the row's item as ``imp[0].ext.item_id`` (what a campaign without an item bids with)."""
    context = {
        c.name: row[c.name] for c in spec.role_columns("context") if c.name not in DERIVED_CONTEXT and c.name in row
    }
    imp: dict[str, Any] = {"id": "1", "ext": {"context": context}}
    if row.get("item_id") is not None:
        imp["ext"]["item_id"] = str(row["item_id"])
    floor = context.get("ad_slot_floor_price")
    if isinstance(floor, int | float) and not isinstance(floor, bool) and floor >= 0:
        imp["bidfloor"] = float(floor)
    user = str(row["user_id"]) if row.get("user_id") is not None else f"anonymous-{request_id}"
    body: dict[str, Any] = {"id": request_id, "imp": [imp], "user": {"id": user}, "ext": {"campaign_id": campaign}}
    device_types = _device_types()
    if context.get("device") in device_types:
        body["device"] = {"devicetype": device_types[context.pop("device")]}
    return body


def request_body(endpoint: str, spec, row: dict[str, Any], campaign: str | None = None, request_id: str = "1") -> dict:
    """The body a logged row implies at ``endpoint`` (``/bid``: for ``campaign``)."""
    if endpoint == "recommend":
        context = {c.name: row[c.name] for c in spec.role_columns("context")}
        return {"user_id": str(row["user_id"]), "k": K, "context": context}
    if endpoint == "predict":
        return {"rows": [{name: row[name] for name in spec.request_features}]}
    if endpoint == "bid":
        if not campaign:
            raise ValueError("a /bid request needs a campaign")
        return bid_body(spec, row, campaign, request_id)
    raise ValueError(f"unknown endpoint {endpoint!r}; known: {sorted(ROUTES)}")


def request_bodies(
    spec, held_out: list[dict], known_users: set[str], seed: int = 0, campaigns: tuple[str, ...] = LOAD_CAMPAIGNS
) -> dict[str, list[dict]]:
    """Shuffled ``/recommend``, ``/predict`` and ``/bid`` bodies from the held-out rows
    (known users only); the bids go to ``campaigns`` in turn."""
    rows = [row for row in held_out if str(row["user_id"]) in known_users]
    random.Random(seed).shuffle(rows)
    rows = rows[:MAX_BODIES]
    bodies = {endpoint: [request_body(endpoint, spec, r) for r in rows] for endpoint in IN_PROCESS_ENDPOINTS}
    bodies["bid"] = [
        request_body("bid", spec, r, campaigns[i % len(campaigns)], f"bench-{i}") for i, r in enumerate(rows)
    ]
    return bodies


def popular_item(rows: list[dict]) -> str:
    """The most frequent ``item_id`` of the rows (the bench's linear campaign bids with it)."""
    from collections import Counter

    counts = Counter(str(row["item_id"]) for row in rows if row.get("item_id") is not None)
    if not counts:
        raise ValueError("no item_id in the rows: no item for the bench's campaign")
    return counts.most_common(1)[0][0]


def bench_campaigns(item_id: str) -> dict[str, dict[str, Any]]:
    """The bench's campaigns: ``bench_linear`` on ``item_id`` and ``bench_paced`` (any item)
    with a budget no bench spends, and ``bench_small_budget`` (``SMALL_BUDGET``) to run out.
    Prices as the synthetic campaigns' (0.9 CPM for a CTR of 0.04, at most 5.0)."""
    linear = {"strategy": "linear", "base_bid": 0.9, "average_ctr": 0.04, "max_bid": 5.0}
    return {
        BENCH_LINEAR: {"item_id": item_id, "daily_budget": UNSPENDABLE_BUDGET, **linear},
        BENCH_PACED: {**linear, "strategy": "paced", "item_id": None, "daily_budget": UNSPENDABLE_BUDGET,
                      "pacing": "shade", "pacing_tolerance": 0.05},
        BENCH_SMALL_BUDGET: {"item_id": item_id, "daily_budget": SMALL_BUDGET, **linear},
    }  # fmt: skip


def bench_campaigns_file(folder: Path, item_id: str, source_campaigns: str | os.PathLike[str] | None = None) -> Path:
    """Write ``campaigns.yaml`` in ``folder``: the campaigns of ``source_campaigns`` (a
    campaigns file), then the bench's (``bench_campaigns``; a name in both is the bench's);
    its path. It is checked as the service will read it."""
    import yaml

    from serving.bidding import load_campaigns

    campaigns: dict[str, Any] = {}
    if source_campaigns:
        loaded = yaml.safe_load(Path(source_campaigns).read_text(encoding="utf-8")) or {}
        campaigns.update(loaded.get("campaigns", loaded) if isinstance(loaded, dict) else {})
    campaigns.update(bench_campaigns(item_id))
    path = folder / "campaigns.yaml"
    path.write_text(yaml.safe_dump({"campaigns": campaigns}, sort_keys=False), encoding="utf-8")
    load_campaigns(path)
    return path


def campaign_spend(store_url: str, namespace: str, campaign: str, days: list[str]) -> dict[str, float]:
    """What ``campaign`` spent on each of ``days`` (UTC ``YYYY-MM-DD``), from the spend
    counters the service keeps in the online store (``spend:<campaign>:<day>``; a budget
    is per day)."""
    from serving.online_store import open_store

    with open_store(store_url) as store:
        return {day: store.get_float(namespace, f"spend:{campaign}:{day}") for day in days}


def utc_days(start_unix: float, end_unix: float) -> list[str]:
    """The UTC days from ``start_unix`` to ``end_unix`` (a run across midnight spends on both)."""
    from datetime import UTC, datetime, timedelta

    first, last = (datetime.fromtimestamp(t, UTC).date() for t in (start_unix, end_unix))
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


# ---- the service ---------------------------------------------------------------------


def copy_model(home: Path, tag: str, new_home: Path) -> None:
    """Copy the bento model ``tag`` of the store at ``home`` into the store at ``new_home``."""
    name, version = tag.split(":")
    source = home / "models" / name / version
    if not source.is_dir():
        raise FileNotFoundError(f"{tag} is not in the BentoML store {home / 'models'}: run `make run` first")
    shutil.copytree(source, new_home / "models" / name / version)
    (new_home / "models" / name / "latest").write_text(version)


def register_second_version(home: Path, tag: str, folder: Path) -> str:
    """Register the SavedModel of ``tag`` again under a new version whose model_version
    differs (so answers tell the versions apart); returns the new tag."""
    from models.export.savedmodel import METADATA_FILE
    from serving.bento_store import save_to_bento_store, savedmodel_path

    copy = folder / "savedmodel-v2"
    shutil.copytree(savedmodel_path(home, tag), copy)
    metadata_path = copy / METADATA_FILE
    metadata = json.loads(metadata_path.read_text())
    metadata["model_version"] = f"{metadata['model_version']}-swap"
    metadata_path.write_text(json.dumps(metadata))
    return save_to_bento_store(home, copy, name=tag.split(":")[0])


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running_service(
    tag: str, home: Path, settings: dict[str, str], log_path: Path
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``bentoml serve`` of ``tag`` on a free port; yields (base URL, process) once
    ``/readyz`` answers 200, and stops the process group after."""
    from serving.config import ENV_PREFIX
    from serving.redis_server import free_port

    port = free_port()
    # The bench's settings only: RECLAKE_* serving settings of the caller's shell would skew it.
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    env.update(
        {
            "BENTOML_HOME": str(home),
            "TF_USE_LEGACY_KERAS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "BENTOML_DO_NOT_TRACK": "True",
            "RECLAKE_BENTO_MODEL_TAG": tag,
            **settings,
        }
    )
    argv = [str(Path(sys.executable).parent / "bentoml"), "serve", "serving.service:RecommenderService",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as output:
        process = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        started = time.monotonic()
        while not _ready(base_url):
            if process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {process.returncode}: {_tail(log_path)}")
            if time.monotonic() - started > STARTUP_TIMEOUT_S:
                raise TimeoutError(f"bentoml serve not ready after {STARTUP_TIMEOUT_S} s: {_tail(log_path)}")
            time.sleep(0.5)
        log(f"service ready at {base_url} in {time.monotonic() - started:.1f} s (log: {log_path})")
        yield base_url, process
    finally:
        stop_service(process)


@dataclasses.dataclass(frozen=True)
class Served:
    """A ``bentoml serve`` started by ``bench_service``."""

    base_url: str
    process: subprocess.Popen
    store_url: str  # the online store it reads (redis:// URL or SQLite file)
    home: Path  # its BentoML store
    tag: str


@contextlib.contextmanager
def bench_service(
    settings,
    spec,
    tag: str,
    store: str,
    folder: Path,
    entities: dict,
    *,
    workers: int,
    campaigns: Path | None = None,
    pinned: Path | None = None,
) -> Iterator[Served]:
    """Serve ``tag`` (of ``make run``'s BentoML store, copied into ``folder``) with an online
    store of its own (``store``: ``redis``, a redis-server started here, or ``embedded``, a
    SQLite file in ``folder``) holding ``entities`` under the source's namespace, bidding
    for ``campaigns`` (a campaigns file), hot-swapping to the tag ``pinned`` names (polled
    every 0.5 s); yields once ``/readyz`` answers and the service reads the store, and
    stops the service and the store after."""
    from serving.config import serving_environment
    from serving.online_store import open_store
    from serving.redis_server import running_redis

    home = folder / "bentoml"
    with contextlib.ExitStack() as stack:
        copy_model(Path(settings.bentoml_home), tag, home)
        store_url = stack.enter_context(running_redis()) if store == "redis" else str(folder / "online.sqlite")
        with open_store(store_url) as online:
            stats = online.publish(spec.source, f"bench-{int(time.time())}", entities)
        log(f"published {stats.keys} rows ({stats.bytes / 1e6:.1f} MB) to {store} store in {stats.seconds:.2f} s")
        environment = serving_environment(
            home, tag, pinned_tag_file=pinned, online_store_url=store_url, workers=workers, campaigns=campaigns
        )
        if pinned is not None:
            environment["RECLAKE_SWAP_POLL_S"] = "0.5"
        base_url, process = stack.enter_context(running_service(tag, home, environment, folder / "serve.log"))
        served_store = _model_info(base_url)["online_store"]
        if not served_store:  # the figures would be of the SavedModel's snapshot features, not the store's
            raise RuntimeError(f"the service reads no online store (/model_info: {served_store!r})")
        yield Served(base_url, process, store_url, home, tag)


def _model_info(base_url: str) -> dict:
    request = urllib.request.Request(
        f"{base_url}/model_info", data=b"{}", headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def stop_service(process: subprocess.Popen) -> None:
    """SIGTERM to the process group of ``bentoml serve`` (it stops its workers), SIGKILL
    after 30 s; then SIGKILL to any of its workers still there (they run in sessions of
    their own)."""
    import psutil

    try:
        workers = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        workers = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _, alive = psutil.wait_procs(workers, timeout=10)
    for worker in alive:
        with contextlib.suppress(psutil.Error):
            worker.kill()


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


class CpuMeter:
    """CPU seconds used by the service's processes (``bentoml serve`` and the workers it
    starts, each in a session of its own) and by this bench's redis-server."""

    def __init__(self, service: subprocess.Popen) -> None:
        import psutil

        self.psutil = psutil
        self.service = psutil.Process(service.pid)

    def _processes(self) -> tuple[list, list]:
        try:
            service = [self.service, *self.service.children(recursive=True)]
        except self.psutil.Error:
            service = []
        store = [p for p in self.psutil.Process().children() if p.name() == "redis-server"]
        return service, store

    def snapshot(self) -> dict[Any, tuple[str, float]]:
        service, store = self._processes()
        times: dict[Any, tuple[str, float]] = {}
        for kind, processes in (("service", service), ("store", store)):
            for process in processes:
                try:
                    cpu = process.cpu_times()
                    times[process.pid] = (kind, cpu.user + cpu.system)
                except self.psutil.Error:
                    continue
        machine = self.psutil.cpu_times()._asdict()
        busy = sum(machine.get(name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
        times["machine"] = ("machine", busy)
        return times

    @staticmethod
    def delta(before: dict, after: dict, client_cpu_s: float) -> dict[str, Any]:
        """The service's, the store's and other processes' CPU seconds between two snapshots
        (``other_cpu_s``: the machine's busy time minus the service, store and client:
        other users of a shared machine, and this bench's own bookkeeping)."""
        per = {pid: (kind, seconds - before.get(pid, (kind, 0.0))[1]) for pid, (kind, seconds) in after.items()}
        service = sorted((round(s, 1) for k, s in per.values() if k == "service"), reverse=True)
        store = sum(s for k, s in per.values() if k == "store")
        machine = per["machine"][1]
        return {
            "server_cpu_s": round(sum(service), 1),
            "server_cpu_by_process_s": service,
            "store_cpu_s": round(store, 2),
            "other_cpu_s": round(max(0.0, machine - sum(service) - store - client_cpu_s), 1),
        }


# ---- load ----------------------------------------------------------------------------


def generate(
    base_url: str,
    phases: list[dict],
    min_connections: int,
    capture_version: bool = False,
    max_connections: int = 512,
    capture_price: bool = False,
    close_connections: bool = False,
    workers: int = 0,
) -> dict:
    """Run the load generator over ``phases`` (path, rate or offsets, seconds, bodies file);
    its result (``capture_price``: each ``/bid`` answer's total price, in ``price``;
    ``close_connections``: a connection per request)."""
    host, port = base_url.removeprefix("http://").rstrip("/").split(":")
    plan = {"host": host, "port": int(port), "timeout_s": CLIENT_TIMEOUT_S, "max_connections": max_connections,
            "min_connections": min_connections, "capture_version": capture_version, "capture_price": capture_price,
            "close_connections": close_connections, "workers": workers, "phases": phases}  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(LOAD_GENERATOR)], input=json.dumps(plan), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}): {done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    for name in ("phase", "scheduled_s", "done_s", "latency_ms", "sent_latency_ms", "sent_s", "status"):
        result[name] = np.asarray(result[name])
    if capture_price:
        result["price"] = np.asarray([np.nan if price is None else price for price in result["price"]], dtype=float)
    return result


def summarize(result: dict, mask, seconds: float) -> dict[str, Any]:
    status, latency = result["status"][mask], result["latency_ms"][mask]
    ok = (status >= 200) & (status < 300)
    shed = status == 503
    timeouts = status <= 0
    other = ~ok & ~shed
    return {
        "rps_achieved": round(float(ok.sum()) / seconds, 1),
        "p50_ms": percentile(latency[ok], 50),
        "p99_ms": percentile(latency[ok], 99),
        "p50_from_send_ms": percentile(result["sent_latency_ms"][mask][ok], 50),
        "errors": int((~ok).sum()),
        "shed_503": int(shed.sum()),
        "other_errors": int(other.sum()),
        "timeouts": int(timeouts.sum()),
        "requests": int(mask.sum()),
    }


class Bench:
    def __init__(self, args, base_url: str, service: subprocess.Popen, bodies: dict[str, Path], common: dict) -> None:
        self.args, self.base_url, self.bodies, self.common = args, base_url, bodies, common
        self.meter = CpuMeter(service)
        self.min_connections = args.connections_per_worker * args.workers
        self.last_bid_result: dict | None = None

    def run(
        self, endpoint: str, rate: float, seconds: float, bodies: str | None = None, close_connections: bool = False
    ) -> dict[str, Any]:
        """One constant-rate run (of the bodies file ``self.bodies[bodies or endpoint]``);
        its load line (not printed; for ``/bid``, the generator's result is kept in
        ``last_bid_result``)."""
        phase = {"path": ROUTES[endpoint], "rate": rate, "seconds": seconds,
                 "bodies": str(self.bodies[bodies or endpoint])}  # fmt: skip
        before = self.meter.snapshot()
        result = generate(self.base_url, [phase], self.min_connections, capture_price=endpoint == "bid",
                          close_connections=close_connections, workers=self.args.workers)  # fmt: skip
        cpu = CpuMeter.delta(before, self.meter.snapshot(), result["client_cpu_s"])
        line = {"benchmark": "serving", "kind": "load", "endpoint": endpoint, "rps_target": rate, "seconds": seconds}
        line.update(summarize(result, result["phase"] == 0, seconds))
        if endpoint == "bid":
            answered = (result["status"] >= 200) & (result["status"] < 300)
            line["no_bid_share"] = round(float((result["status"] == 204).sum()) / max(1, int(answered.sum())), 4)
            self.last_bid_result = result
        line.update(self.common)
        line.update({"client_cpu_s": result["client_cpu_s"], "client_send_lag_p50_ms": result["send_lag_p50_ms"],
                     "client_send_lag_p99_ms": result["send_lag_p99_ms"], "connections": result["connections"],
                     "worker_connections": result["worker_connections"], **cpu})  # fmt: skip
        return line

    def warm_up(self, endpoint: str) -> None:
        self.run(endpoint, min(self.args.rates), WARMUP_S)


def passes(line: dict) -> bool:
    return line["errors"] == 0 and line["p99_ms"] is not None and line["p99_ms"] <= PEAK_P99_MS


# ---- in process ----------------------------------------------------------------------


class InProcess:
    """``ServedModel`` on the same store, in this process, with the signature calls timed."""

    def __init__(self, tag: str, savedmodel_dir: str, store_url: str, tf_threads: int) -> None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(tf_threads)
        tf.config.threading.set_inter_op_parallelism_threads(tf_threads)
        from serving.online_store import open_store
        from serving.schemas import fill_derived_context
        from serving.scoring import ServedModel

        self.fill = fill_derived_context
        self.store = open_store(store_url)
        self.model = ServedModel(tag, savedmodel_dir, self.store)
        self.model.warm_up()
        self.signature_s = 0.0
        recommender = self.model.recommender
        for name in (
            "rank_arrays",
            "retrieve_arrays",
            "predict_arrays",
            "recommend_arrays",
            "recommend_features_arrays",
        ):
            setattr(recommender, name, self._timed(getattr(recommender, name)))

    def _timed(self, method):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.signature_s += time.perf_counter() - started

        return timed

    def measure(self, endpoint: str, bodies: list[dict]) -> dict[str, Any]:
        from datetime import UTC, datetime

        totals, signatures, fallbacks = [], [], 0
        for body in bodies:
            self.signature_s = 0.0
            started = time.perf_counter()
            if endpoint == "recommend":
                now = datetime.now(UTC)  # what the handler does, then the model call
                scored = self.model.recommend(
                    body["user_id"], body["k"], self.fill(dict(body["context"]), now.hour, now.weekday())
                )
                fallbacks += scored.fallback is not None
            else:
                scored = self.model.predict(body["rows"])
            totals.append((time.perf_counter() - started) * 1000)
            signatures.append(self.signature_s * 1000)
        return {
            "graph_p50_ms": percentile(totals, 50),
            "graph_p99_ms": percentile(totals, 99),
            "signature_p50_ms": percentile(signatures, 50),
            "in_process_requests": len(bodies),
            "fallback_share": round(fallbacks / len(bodies), 3) if endpoint == "recommend" else None,
        }

    def close(self) -> None:
        self.store.close()


# ---- budgets ---------------------------------------------------------------------------


def budget_check(bench: Bench, store_url: str, namespace: str, rate: float, seconds: float) -> dict[str, Any]:
    """``rate`` bids/s for ``seconds`` for ``bench_small_budget`` (its budget runs out in a
    second or two), then its spend as the store counted it against its budget. Each
    request comes on a connection of its own, so that every worker takes some (a
    keep-alive pool tends to land on one) and the workers contend for the budget
    (``server_cpu_by_process_s``: the split)."""
    started = time.time()
    line = bench.run("bid", rate, seconds, bodies="bid_small_budget", close_connections=True)
    result = bench.last_bid_result
    by_day = campaign_spend(store_url, namespace, BENCH_SMALL_BUDGET, utc_days(started, time.time()))
    spend = sum(by_day.values())
    prices = result["price"][np.isfinite(result["price"])]
    max_cost = float(prices.max()) / 1000 if len(prices) else None
    overspend = max(max(0.0, day_spend - SMALL_BUDGET) for day_spend in by_day.values())
    return {
        "benchmark": "serving", "kind": "budget", "endpoint": "bid", "campaign": BENCH_SMALL_BUDGET,
        "rps_target": rate, "seconds": seconds, "budget": SMALL_BUDGET, "spend": round(spend, 6),
        "budget_overspend": round(overspend, 9), "max_bid_cost": round(max_cost, 6) if max_cost else None,
        "within_one_bid": overspend <= (max_cost or 0.0) + 1e-9,
        "bids": int((result["status"] == 200).sum()), "no_bids": int((result["status"] == 204).sum()),
        "client_bid_cost": round(float(prices.sum()) / 1000, 6),
        "errors": line["errors"], "p50_ms": line["p50_ms"], "p99_ms": line["p99_ms"], **bench.common,
        "server_cpu_by_process_s": line["server_cpu_by_process_s"],
    }  # fmt: skip


# ---- overload and recovery, hot swap ---------------------------------------------------


def find_peak(bench: Bench, endpoint: str, lines: list[dict], steps: int) -> tuple[float | None, list[dict]]:
    """The highest rate that passes (sweep, then ``steps`` bisection runs); the extra lines."""
    passing = [line["rps_target"] for line in lines if passes(line)]
    failing = [line["rps_target"] for line in lines if not passes(line)]
    best = max(passing) if passing else None
    worst = min((rate for rate in failing if best is None or rate > best), default=None)
    extra = []
    for _ in range(steps):
        if best is None or worst is None or worst - best < 0.1 * best:
            break
        rate = round((best + worst) / 2)
        line = bench.run(endpoint, rate, bench.args.seconds)
        line["kind"] = "peak_search"
        emit(line)
        extra.append(line)
        if passes(line):
            best = rate
        else:
            worst = rate
    return best, extra


def recovery(result: dict, start_s: float, seconds: float, limit_ms: float, window_s: float = 1.0) -> tuple:
    """(first 200 after ``start_s``, start of the first ``window_s`` window of requests that
    are all 2xx with p99 <= ``limit_ms``), both in seconds after ``start_s``; None: never."""
    mask = result["phase"] == 1
    scheduled, done = result["scheduled_s"][mask] - start_s, result["done_s"][mask] - start_s
    status, latency = result["status"][mask], result["latency_ms"][mask]
    ok = (status >= 200) & (status < 300)
    first_200 = round(float(done[ok].min()), 2) if ok.any() else None
    recovered = None
    for begin in np.arange(0.0, seconds - window_s + 1e-9, 0.1):
        inside = (scheduled >= begin) & (scheduled < begin + window_s)
        if inside.any() and ok[inside].all() and np.percentile(latency[inside], 99) <= limit_ms:
            recovered = round(float(begin), 1)
            break
    return first_200, recovered


def overload(bench: Bench, endpoint: str, peak: float | None, baseline: dict) -> dict[str, Any]:
    args = bench.args
    low = min(args.rates)
    offered = 2 * (peak if peak is not None else low)
    phases = [
        {"path": ROUTES[endpoint], "rate": offered, "seconds": args.seconds, "bodies": str(bench.bodies[endpoint])},
        {
            "path": ROUTES[endpoint],
            "rate": low,
            "seconds": args.recovery_seconds,
            "bodies": str(bench.bodies[endpoint]),
        },
    ]
    before = bench.meter.snapshot()
    result = generate(bench.base_url, phases, bench.min_connections, workers=bench.args.workers)
    cpu = CpuMeter.delta(before, bench.meter.snapshot(), result["client_cpu_s"])
    burst = result["phase"] == 0
    status, latency = result["status"][burst], result["latency_ms"][burst]
    summary = summarize(result, burst, args.seconds)
    limit = 2 * baseline["p99_ms"] if baseline.get("p99_ms") else 2 * PEAK_P99_MS
    first_200, recovered = recovery(result, args.seconds, args.recovery_seconds, limit)
    return {
        "benchmark": "serving", "kind": "overload", "endpoint": endpoint, "peak_rps": peak, "rps_offered": offered,
        "seconds": args.seconds, "goodput_rps": summary["rps_achieved"], "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"], "shed_503": summary["shed_503"],
        "shed_share": round(summary["shed_503"] / max(1, summary["requests"]), 3),
        "p50_503_ms": percentile(latency[status == 503], 50), "p99_503_ms": percentile(latency[status == 503], 99),
        "other_errors": summary["other_errors"], "timeouts": summary["timeouts"],
        "recovery_rps": low, "baseline_p99_ms": baseline.get("p99_ms"), "recovery_limit_p99_ms": round(limit, 2),
        "first_200_s": first_200, "recovered_s": recovered,
        "recovered_within_5s": recovered is not None and recovered <= 5.0,
        **bench.common, "client_cpu_s": result["client_cpu_s"],
        "client_send_lag_p99_ms": result["send_lag_p99_ms"], "connections": result["connections"], **cpu,
    }  # fmt: skip


def hot_swap(bench: Bench, pinned: Path, new_tag: str, seconds: float, rate: int = 50) -> dict[str, Any]:
    """``rate`` requests/s to /recommend; the pin changes to ``new_tag`` after a third of the run."""
    pin_at = seconds / 3
    phase = {"path": ROUTES["recommend"], "rate": rate, "seconds": seconds, "bodies": str(bench.bodies["recommend"])}
    written: list[float] = []

    def pin() -> None:  # the generator starts within a fraction of a second; offsets are on its clock
        pinned.write_text(new_tag)
        written.append(time.time())

    timer = threading.Timer(pin_at, pin)
    timer.start()
    try:
        result = generate(
            bench.base_url, [phase], bench.min_connections, capture_version=True, workers=bench.args.workers
        )
    finally:
        timer.cancel()
    versions = result["version"]
    status, latency, done = result["status"], result["latency_ms"], result["done_s"]
    ok = (status >= 200) & (status < 300)
    pin_s = (written[0] - result["t0_unix"]) if written else None
    old_version = next((v for v in versions if v), None)
    new_answers = [done[i] for i, v in enumerate(versions) if v and v != old_version]
    old_answers = [done[i] for i, v in enumerate(versions) if v == old_version]
    first_new = min(new_answers) if new_answers else None
    last_old = max(old_answers) if old_answers else None
    before = ok & (done < (pin_s or 0))
    during = ok & (done >= (pin_s or 0)) & (done <= (last_old or 0) + 1.0)
    return {
        "benchmark": "serving", "kind": "swap", "endpoint": "recommend", "rps_target": rate, "seconds": seconds,
        "new_tag": new_tag, "requests": int(len(status)), "failed": int((~ok).sum()),
        "shed_503": int((status == 503).sum()), "timeouts": int((status <= 0).sum()),
        "pin_written_s": round(pin_s, 2) if pin_s is not None else None,
        "first_new_answer_s": round(first_new, 2) if first_new is not None else None,
        "last_old_answer_s": round(last_old, 2) if last_old is not None else None,
        "swap_s": round(last_old - pin_s, 2) if last_old is not None and pin_s is not None else None,
        "new_version_answers": len(new_answers),
        "p99_ms_before": percentile(latency[before], 99), "p99_ms_during": percentile(latency[during], 99),
        "max_ms_during": round(float(latency[during].max()), 1) if during.any() else None,
        **bench.common, "client_cpu_s": result["client_cpu_s"],
    }  # fmt: skip


# ---- main ------------------------------------------------------------------------------


def _rates(text: str) -> list[float]:
    rates = [float(rate) for rate in text.split(",") if rate.strip()]
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive requests/s, comma-separated: {text!r}")
    return [int(rate) if rate.is_integer() else rate for rate in rates]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("embedded", "redis"), default="embedded")
    parser.add_argument("--workers", type=int, default=cores(), help="bentoml serve worker processes (default: cores)")
    parser.add_argument("--rates", type=_rates, default=[50, 100, 200, 400, 600], help="requests/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="per rate (60 for the headline figure)")
    parser.add_argument("--endpoints", type=lambda s: s.split(","), default=["recommend", "predict"])
    parser.add_argument("--peak", action="store_true", help="find the peak, offer 2x it, measure recovery")
    parser.add_argument("--peak-steps", type=int, default=2, help="bisection runs refining the peak")
    parser.add_argument("--recovery-seconds", type=float, default=10.0)
    parser.add_argument(
        "--connections-per-worker", type=int, default=4, help="keep-alive connections opened up front, per worker"
    )
    parser.add_argument("--swap", action="store_true", help="hot-swap the model under 50 requests/s")
    parser.add_argument("--swap-seconds", type=float, default=20.0)
    parser.add_argument("--budget-rate", type=float, default=200.0, help="bids/s of the small-budget run (with bid)")
    parser.add_argument("--budget-seconds", type=float, default=10.0, help="length of the small-budget run")
    args = parser.parse_args()
    for endpoint in args.endpoints:
        if endpoint not in ROUTES:
            parser.error(f"--endpoints: {endpoint!r} is not one of {sorted(ROUTES)}")
    args.rates = sorted(args.rates)

    from reclake.settings import load_settings

    settings = load_settings()
    spec = settings.load_feature_spec()
    tag_file = settings.current_model_tag_file
    if not tag_file.is_file():
        raise SystemExit(f"{tag_file} is missing: run `make run` first")
    tag = tag_file.read_text().strip()
    log(f"model {tag}, source {spec.source}, warehouse {settings.warehouse_path}")

    entities, held_out, day = read_warehouse(settings.warehouse_path, spec)
    bodies = request_bodies(spec, held_out, set(entities["user"]))
    bodies["bid_small_budget"] = [{**body, "ext": {"campaign_id": BENCH_SMALL_BUDGET}} for body in bodies["bid"]]
    log(f"held-out day {day}: {len(held_out)} rows, {len(bodies['recommend'])} request bodies; "
        f"store: {len(entities['user'])} users, {len(entities['item'])} items")  # fmt: skip

    folder = Path(tempfile.mkdtemp(prefix="reclake-bench-serving-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, folder, True)
        campaigns = bench_campaigns_file(folder, popular_item(held_out), settings.campaigns_file)
        files = {}
        for name, documents in bodies.items():
            files[name] = folder / f"{name}.jsonl"
            files[name].write_text("".join(json.dumps(body) + "\n" for body in documents))
        pinned = folder / "pinned_tag"
        pinned.write_text(tag)
        served = stack.enter_context(
            bench_service(settings, spec, tag, args.store, folder, entities, workers=args.workers,
                          campaigns=campaigns, pinned=pinned)
        )  # fmt: skip
        common = {"workers": args.workers, "online_store": args.store, "cores": cores()}
        bench = Bench(args, served.base_url, served.process, files, common)
        in_process: InProcess | None = None
        from serving.bento_store import savedmodel_path

        for endpoint in args.endpoints:
            bench.warm_up(endpoint)
            lines = []
            for rate in args.rates:
                line = bench.run(endpoint, rate, args.seconds)
                emit(line)
                lines.append(line)
                # The in-process figure, in the same minute as the lowest rate.
                if rate == args.rates[0] and endpoint in IN_PROCESS_ENDPOINTS:
                    if in_process is None:
                        tf_threads = max(1, cores() // args.workers)
                        in_process = InProcess(tag, savedmodel_path(served.home, tag), served.store_url, tf_threads)
                    figures = in_process.measure(endpoint, bodies[endpoint][:IN_PROCESS_REQUESTS])
                    overhead = (
                        round(line["p50_ms"] - figures["graph_p50_ms"], 2) if line["p50_ms"] is not None else None
                    )
                    emit({"benchmark": "serving", "kind": "in_process", "endpoint": endpoint, **figures,
                          "http_p50_ms": line["p50_ms"], "http_rps": rate, "overhead_p50_ms": overhead,
                          **common})  # fmt: skip
            if endpoint == "bid":
                emit(budget_check(bench, served.store_url, spec.source, args.budget_rate, args.budget_seconds))
            if args.peak:
                peak, extra = find_peak(bench, endpoint, lines, args.peak_steps)
                baseline = lines[0]
                emit(overload(bench, endpoint, peak, baseline))
        if in_process is not None:
            in_process.close()
        if args.swap:
            new_tag = register_second_version(served.home, tag, folder)
            emit(hot_swap(bench, pinned, new_tag, args.swap_seconds))


if __name__ == "__main__":
    main()
