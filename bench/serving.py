"""Benchmark: the online serving tier (``bentoml serve``) under open-loop HTTP load.

Serves the model ``make run`` pinned (``current_model_tag``), from a temporary copy of its
BentoML store, with the bench's own online store (``--store redis``: a redis-server
started here; ``embedded``: a SQLite file in a temporary folder) published from the
warehouse's ``user_features`` / ``item_features`` (plus each user's newest positive
items from ``fct_events`` as ``history``), under the source's namespace. Requests are
the held-out day of logs (the newest ``event_date`` of ``training_examples``):
``/recommend`` bodies ``{user_id, k: 10, context}`` and ``/predict`` bodies of one row
(``spec.request_features``), in a shuffled order.

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
  machine's busy time: on a shared machine, other people's work);
- ``"kind": "in_process"``, per endpoint: the same requests answered in this process
  by ``serving.scoring.ServedModel`` on the same store, one at a time, measured right
  after the lowest rate: ``graph_p50_ms`` (the full path: store reads, feature
  assembly, the SavedModel's signatures), ``signature_p50_ms`` (the signature calls
  alone: ``retrieve_arrays`` + ``rank_arrays``, or ``rank_arrays``), and
  ``overhead_p50_ms`` = HTTP ``p50_ms`` at the lowest rate - ``graph_p50_ms``;
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
[--seconds 20] [--endpoints recommend,predict] [--peak] [--swap]`` (``make loadtest``:
``--store redis``; 60 s per rate for the headline figure: ``--seconds 60``). About
(endpoints x rates x seconds) + 1 min; needs ``make run`` first.
"""

import argparse
import contextlib
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
HISTORY_LENGTH = 50  # the newest positive items per user the store holds, as the online_features asset does
PEAK_P99_MS = 50.0
WARMUP_S = 3.0
IN_PROCESS_REQUESTS = 300
MAX_BODIES = 20_000
ROUTES = {"recommend": "/recommend", "predict": "/predict"}


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

    from serving.online_store import json_native

    entities: dict[str, dict[str, dict[str, Any]]] = {}
    with duckdb.connect(warehouse, read_only=True) as connection:
        for entity, table in (("user", "user_features"), ("item", "item_features")):
            names = spec.lookup_features(entity)
            selected = ", ".join(_quoted(c) for c in (f"{entity}_id", *names))
            query = f"select {selected} from {table} where {entity}_id is not null"
            entities[entity] = {
                str(row[0]): {n: json_native(v) for n, v in zip(names, row[1:], strict=True)}
                for row in connection.execute(query).fetchall()
            }
        histories = dict(
            connection.execute(
                """select user_id, list(item_id order by slot) from (
                       select user_id, item_id,
                              row_number() over (partition by user_id order by event_ts desc, event_id desc) as slot
                       from fct_events where is_positive = 1 and user_id is not null and item_id is not null)
                   where slot <= ? group by user_id""",
                [HISTORY_LENGTH],
            ).fetchall()
        )
        for user_id, row in entities["user"].items():
            row["history"] = [str(item) for item in histories.get(user_id, [])]
        day = connection.execute("select max(event_date) from training_examples").fetchone()[0]
        columns = spec.request_features
        rows = connection.execute(
            f"select {', '.join(_quoted(c) for c in columns)} from training_examples where event_date = ?", [day]
        ).fetchall()
    held_out = [{c: json_native(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    return entities, held_out, str(day)


def request_bodies(spec, held_out: list[dict], known_users: set[str], seed: int = 0) -> dict[str, list[dict]]:
    """Shuffled ``/recommend`` and ``/predict`` bodies from the held-out rows (known users only)."""
    context = [c.name for c in spec.role_columns("context")]
    rows = [row for row in held_out if str(row["user_id"]) in known_users]
    random.Random(seed).shuffle(rows)
    rows = rows[:MAX_BODIES]
    return {
        "recommend": [{"user_id": str(r["user_id"]), "k": K, "context": {c: r[c] for c in context}} for r in rows],
        "predict": [{"rows": [{c: r[c] for c in spec.request_features}]} for r in rows],
    }


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
    base_url: str, phases: list[dict], min_connections: int, capture_version: bool = False, max_connections: int = 512
) -> dict:
    """Run the load generator over ``phases`` (path, rate, seconds, bodies file); its result."""
    host, port = base_url.removeprefix("http://").split(":")
    plan = {"host": host, "port": int(port), "timeout_s": CLIENT_TIMEOUT_S, "max_connections": max_connections,
            "min_connections": min_connections, "capture_version": capture_version, "phases": phases}  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(LOAD_GENERATOR)], input=json.dumps(plan), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}): {done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    for name in ("phase", "scheduled_s", "done_s", "latency_ms", "sent_latency_ms", "status"):
        result[name] = np.asarray(result[name])
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

    def run(self, endpoint: str, rate: float, seconds: float) -> dict[str, Any]:
        """One constant-rate run; its load line (not printed)."""
        phase = {"path": ROUTES[endpoint], "rate": rate, "seconds": seconds, "bodies": str(self.bodies[endpoint])}
        before = self.meter.snapshot()
        result = generate(self.base_url, [phase], self.min_connections)
        cpu = CpuMeter.delta(before, self.meter.snapshot(), result["client_cpu_s"])
        line = {"benchmark": "serving", "kind": "load", "endpoint": endpoint, "rps_target": rate, "seconds": seconds}
        line.update(summarize(result, result["phase"] == 0, seconds))
        line.update(self.common)
        line.update({"client_cpu_s": result["client_cpu_s"], "client_send_lag_p50_ms": result["send_lag_p50_ms"],
                     "client_send_lag_p99_ms": result["send_lag_p99_ms"], "connections": result["connections"],
                     **cpu})  # fmt: skip
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
        for name in ("rank_arrays", "retrieve_arrays", "predict_arrays", "recommend_arrays"):
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
    result = generate(bench.base_url, phases, bench.min_connections)
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
        result = generate(bench.base_url, [phase], bench.min_connections, capture_version=True)
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
    args = parser.parse_args()
    for endpoint in args.endpoints:
        if endpoint not in ROUTES:
            parser.error(f"--endpoints: {endpoint!r} is not one of {sorted(ROUTES)}")
    args.rates = sorted(args.rates)

    from reclake.settings import load_settings
    from serving.config import serving_environment
    from serving.online_store import open_store
    from serving.redis_server import running_redis

    settings = load_settings()
    spec = settings.load_feature_spec()
    tag_file = settings.current_model_tag_file
    if not tag_file.is_file():
        raise SystemExit(f"{tag_file} is missing: run `make run` first")
    tag = tag_file.read_text().strip()
    log(f"model {tag}, source {spec.source}, warehouse {settings.warehouse_path}")

    entities, held_out, day = read_warehouse(settings.warehouse_path, spec)
    bodies = request_bodies(spec, held_out, set(entities["user"]))
    log(f"held-out day {day}: {len(held_out)} rows, {len(bodies['recommend'])} request bodies; "
        f"store: {len(entities['user'])} users, {len(entities['item'])} items")  # fmt: skip

    folder = Path(tempfile.mkdtemp(prefix="reclake-bench-serving-"))
    home = folder / "bentoml"
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, folder, True)
        copy_model(Path(settings.bentoml_home), tag, home)
        store_url = stack.enter_context(running_redis()) if args.store == "redis" else str(folder / "online.sqlite")
        with open_store(store_url) as store:
            stats = store.publish(spec.source, f"bench-{int(time.time())}", entities)
        log(f"published {stats.keys} rows ({stats.bytes / 1e6:.1f} MB) to {args.store} store in {stats.seconds:.2f} s")
        files = {}
        for endpoint in ROUTES:
            files[endpoint] = folder / f"{endpoint}.jsonl"
            files[endpoint].write_text("".join(json.dumps(body) + "\n" for body in bodies[endpoint]))
        pinned = folder / "pinned_tag"
        pinned.write_text(tag)
        service_settings = {
            **serving_environment(home, tag, pinned_tag_file=pinned, online_store_url=store_url, workers=args.workers),
            "RECLAKE_SWAP_POLL_S": "0.5",
        }
        base_url, service = stack.enter_context(running_service(tag, home, service_settings, folder / "serve.log"))
        served_store = _model_info(base_url)["online_store"]
        if not served_store:  # the figures would be of the SavedModel's snapshot features, not the store's
            raise RuntimeError(f"the service reads no online store (/model_info: {served_store!r})")
        common = {"workers": args.workers, "online_store": args.store, "cores": cores()}
        bench = Bench(args, base_url, service, files, common)
        in_process: InProcess | None = None
        from serving.bento_store import savedmodel_path

        for endpoint in args.endpoints:
            bench.warm_up(endpoint)
            lines = []
            for rate in args.rates:
                line = bench.run(endpoint, rate, args.seconds)
                emit(line)
                lines.append(line)
                if rate == args.rates[0]:  # the in-process figure, in the same minute as the lowest rate
                    if in_process is None:
                        tf_threads = max(1, cores() // args.workers)
                        in_process = InProcess(tag, savedmodel_path(home, tag), store_url, tf_threads)
                    figures = in_process.measure(endpoint, bodies[endpoint][:IN_PROCESS_REQUESTS])
                    overhead = (
                        round(line["p50_ms"] - figures["graph_p50_ms"], 2) if line["p50_ms"] is not None else None
                    )
                    emit({"benchmark": "serving", "kind": "in_process", "endpoint": endpoint, **figures,
                          "http_p50_ms": line["p50_ms"], "http_rps": rate, "overhead_p50_ms": overhead,
                          **common})  # fmt: skip
            if args.peak:
                peak, extra = find_peak(bench, endpoint, lines, args.peak_steps)
                baseline = lines[0]
                emit(overload(bench, endpoint, peak, baseline))
        if in_process is not None:
            in_process.close()
        if args.swap:
            new_tag = register_second_version(home, tag, folder)
            emit(hot_swap(bench, pinned, new_tag, args.swap_seconds))


if __name__ == "__main__":
    main()
