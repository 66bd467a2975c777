"""Start a real ``bentoml serve`` of a model tag for a test, and always stop it."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from conftest import PROJECT_ROOT, free_port

STARTUP_TIMEOUT_S = 180


@contextmanager
def running_service(tag: str, bentoml_home: Path) -> Iterator[str]:
    """Serve ``tag`` from the store at ``bentoml_home`` on a free loopback port.

    Yields:
        The base URL, once ``/readyz`` answers 200.
    """
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "RECLAKE_BENTO_MODEL_TAG": tag,
        "TF_USE_LEGACY_KERAS": "1",
    }
    argv = [str(Path(sys.executable).parent / "bentoml"), "serve", "serving.service:RecommenderService",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with running_server(argv, port, env, bentoml_home / f"serve-{port}.log") as base_url:
        yield base_url


@contextmanager
def running_server(argv: list[str], port: int, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Start ``argv`` (a server listening on ``port``) with its output in ``log_path``.

    Yields:
        The base URL, once ``/readyz`` answers 200; the process group is stopped after.
    """
    log = log_path.open("w")
    process = subprocess.Popen(
        argv, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {process.returncode}; see {log.name}")
            try:
                if requests.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # still starting
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {STARTUP_TIMEOUT_S} s; see {log.name}")
            time.sleep(1)
        yield base_url
    finally:
        stop_process_group(process, signal.SIGTERM, timeout=30)
        log.close()


def stop_process_group(process: subprocess.Popen, sig: int, timeout: float) -> None:
    """Send ``sig`` to the process group ``process`` leads; SIGKILL it after ``timeout`` s."""
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
