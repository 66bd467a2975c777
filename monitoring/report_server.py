"""Serve the reports a pipeline writes into its lake over HTTP, read-only.

Drift reports, the Great Expectations Data Docs, training curves and the run summary are
files in the lake (a local folder or ``s3://``). A browser cannot open a local path from
the Dagster UI, nor an ``s3://`` URL at all, so ``make ui`` starts this server beside
Dagster and the assets link their reports to it (``Settings.reports_url``): one click from
an asset's page.

``GET /`` lists the reports found; ``GET /<path>`` returns the lake file at ``<path>``
(``index.html`` for a folder), and ``GET /data_docs/<path>`` a file of the source's Great
Expectations site (a local folder: GX builds it there). Only files under those roots are
served; nothing is written. Usage: ``python -m monitoring.report_server [--host H]
[--port P]`` (defaults from ``Settings.reports_url``).
"""

from __future__ import annotations

import argparse
import html
import mimetypes
import os
import posixpath
import signal
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from reclake.lake import Lake

# The server path under which the Great Expectations site is served.
DATA_DOCS_ROUTE = "data_docs"

# What the index page lists, as glob patterns of server paths, with a heading each.
REPORT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("Drift reports", "reports/drift/dt=*/drift_report.html"),
    ("Data Docs", f"{DATA_DOCS_ROUTE}/index.html"),
    ("Bidding simulations", "reports/bidding/dt=*/bidding_simulation.html"),
    ("Training curves", "models/**/training_curve.html"),  # the zoo's: models/training/<config>/<version>/
    ("Run summary", "run_summary.json"),
)


def lake_path(request_path: str) -> str | None:
    """The lake-relative path a request asks for, or None when it leaves the lake root.

    ``/reports/drift/dt=2024-03-07/drift_report.html?x=1`` ->
    ``reports/drift/dt=2024-03-07/drift_report.html``; ``/`` -> ``""``;
    ``/../etc/passwd`` and ``/a/../../b`` -> None.
    """
    path = urllib.parse.unquote(urllib.parse.urlsplit(request_path).path)
    if "\x00" in path or "\\" in path:
        return None
    parts = [part for part in path.split("/") if part not in ("", ".")]
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else 1
        if depth < 0:
            return None
    return posixpath.normpath("/".join(parts)) if parts else ""


@dataclass(frozen=True)
class ReportRoots:
    """Where server paths are read from: the lake, and optionally the local Data Docs site.

    Args:
        lake: the pipeline's lake; serves every path outside the other routes.
        data_docs_site: the Great Expectations site folder (``DataDocsSite.site_dir``),
            served under ``/data_docs/``; None when there is none.
    """

    lake: Lake
    data_docs_site: str | None = None

    def resolve(self, path: str) -> tuple[Lake, str] | None:
        """(the store, the path inside it) for a server path; None for an unmounted route."""
        head, _, rest = path.partition("/")
        if head == DATA_DOCS_ROUTE:
            return (Lake.open(self.data_docs_site), rest) if self.data_docs_site else None
        return self.lake, path

    def glob(self, pattern: str) -> list[str]:
        """Server paths matching ``pattern`` (a server path with ``*``)."""
        resolved = self.resolve(pattern)
        if resolved is None:
            return []
        store, inner = resolved
        fs, root = store.fs, store.root.rstrip("/")
        prefix = fs._strip_protocol(root).rstrip("/") + "/"
        found = [match[len(prefix) :] for match in fs.glob(f"{root}/{inner}") if match.startswith(prefix)]
        mount = pattern[: len(pattern) - len(inner)]
        return [mount + match for match in found]


@dataclass(frozen=True)
class ReportIndex:
    """The reports on offer, grouped by ``REPORT_PATTERNS`` heading (newest first)."""

    groups: dict[str, list[str]]

    @classmethod
    def of(cls, roots: ReportRoots) -> ReportIndex:
        return cls({heading: sorted(roots.glob(pattern), reverse=True) for heading, pattern in REPORT_PATTERNS})

    def html(self, title: str) -> str:
        sections = []
        for heading, paths in self.groups.items():
            items = "".join(f'<li><a href="/{urllib.parse.quote(path)}">{html.escape(path)}</a></li>' for path in paths)
            sections.append(f"<h2>{html.escape(heading)}</h2><ul>{items or '<li>none yet</li>'}</ul>")
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
        )


def _handler(roots: ReportRoots) -> type[BaseHTTPRequestHandler]:
    class LakeReportHandler(BaseHTTPRequestHandler):
        server_version = "ReclakeReports"

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
            self._respond(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._respond(body=True)

        def _respond(self, body: bool) -> None:
            relative = lake_path(self.path)
            if relative == "":
                page = ReportIndex.of(roots).html(f"Reclake reports in {roots.lake.root}").encode()
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8", body)
                return
            resolved = None if relative is None else roots.resolve(relative)
            if resolved is None:
                self._send(HTTPStatus.NOT_FOUND, b"not a report path\n", "text/plain", body)
                return
            store, inner = resolved
            url = store.url(inner) if inner else store.root
            fs = store.fs
            if fs.isdir(url):
                url = f"{url.rstrip('/')}/index.html"
            try:
                data = fs.cat_file(url)
            except (FileNotFoundError, IsADirectoryError):
                self._send(HTTPStatus.NOT_FOUND, f"no report at {relative}\n".encode(), "text/plain", body)
                return
            kind = mimetypes.guess_type(url)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind in ("application/json", "application/javascript"):
                kind += "; charset=utf-8"
            self._send(HTTPStatus.OK, data, kind, body)

        def _send(self, status: HTTPStatus, data: bytes, kind: str, body: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
            return  # quiet: `make ui` shares the terminal with Dagster

    return LakeReportHandler


def start_report_server(roots: ReportRoots, host: str, port: int) -> ThreadingHTTPServer:
    """Serve the reports under ``roots`` on ``host:port`` from a daemon thread;
    ``shutdown()`` stops it.

    Raises:
        OSError: the port is taken.
    """
    server = ThreadingHTTPServer((host, port), _handler(roots))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="reclake-reports", daemon=True).start()
    return server


def _exit_when_orphaned(poll_seconds: float = 2.0) -> None:
    """End this process once its parent has gone (it is then re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(0)

    threading.Thread(target=watch, name="reclake-reports-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    from reclake.settings import load_settings

    settings = load_settings()
    default = urllib.parse.urlsplit(settings.reports_url)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=default.hostname or "127.0.0.1")
    parser.add_argument("--port", type=int, default=default.port or 80)
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started this one ends (make ui)"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # Started in the background by a shell, SIGINT arrives ignored: Ctrl-C should stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.exit_with_parent:
        _exit_when_orphaned()
    from monitoring.data_quality import DataDocsSite

    roots = ReportRoots(
        Lake.open(settings.lake_root, settings.s3_endpoint_url),
        str(DataDocsSite(settings.data_docs_dir).site_dir),
    )
    try:
        server = ThreadingHTTPServer((args.host, args.port), _handler(roots))
    except OSError as error:
        print(f"reports: cannot listen on {args.host}:{args.port} ({error}); set RECLAKE_REPORTS_URL", file=sys.stderr)
        return 1
    print(f"reports of {settings.lake_root} at http://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
