"""Serve Evidently's UI over the lake's drift workspace (``monitoring.workspace``).

On a lake that is not a local folder (``s3://``) the lake's workspace is first copied to
its local copy under the state dir (``WorkspaceLocation.pull``), and the UI serves that
copy: days reported after it started show after a restart.

The ``drift_report`` asset adds each day's snapshot to the workspace; this UI shows the
source's project with its dashboards over time (share of drifted columns, each column's
drift score) and every snapshot's report, and the asset links to the project's page.
``make reports`` starts it beside the report server.

Usage: ``python -m monitoring.evidently_ui [--host H] [--port P] [--workspace PATH]``
(defaults: ``Settings.evidently_ui_url``, ``http://127.0.0.1:8002``, and the configured
lake's workspace; ``--workspace`` serves a local folder as it is). Evidently's usage telemetry is off.
"""

from __future__ import annotations

import argparse
import signal
import sys
import urllib.parse
from pathlib import Path


def serve(workspace: str, host: str, port: int) -> None:
    """Run Evidently's UI on ``host:port`` over the workspace folder ``workspace``
    (created when missing) until interrupted.

    Raises:
        SystemExit: the port is taken (uvicorn's way of failing).
    """
    import uvicorn
    from evidently.ui.service.app import create_app, get_config

    Path(workspace).mkdir(parents=True, exist_ok=True)
    config = get_config(host=host, port=port, workspace=workspace)
    config.telemetry.enabled = False
    # As Evidently's own `evidently ui` runs it, without a line per request (the terminal
    # is shared with the report server).
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")


def local_workspace(location) -> str:
    """The local folder to serve for ``location`` (a ``monitoring.workspace.WorkspaceLocation``):
    the lake's own folder, or its copy refreshed from the lake."""
    if location.remote is not None:
        print(f"Evidently workspace: copying {location.remote} to {location.folder}", flush=True)
        location.pull()
    return location.folder


def main(argv: list[str] | None = None) -> int:
    from monitoring.report_server import _exit_when_orphaned
    from monitoring.workspace import workspace_location
    from reclake.lake import Lake
    from reclake.settings import load_settings

    settings = load_settings()
    default = urllib.parse.urlsplit(settings.evidently_ui_url)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=default.hostname or "127.0.0.1")
    parser.add_argument("--port", type=int, default=default.port or 80)
    parser.add_argument("--workspace", help="the workspace folder (default: the configured lake's)")
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started this one ends (make reports)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    workspace = args.workspace or local_workspace(
        workspace_location(Lake.open(settings.lake_root, settings.s3_endpoint_url), settings.source_state_dir)
    )
    # Started in the background by a shell, SIGINT arrives ignored: Ctrl-C should stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.exit_with_parent:
        _exit_when_orphaned()
    print(f"Evidently UI of {workspace} at http://{args.host}:{args.port}/", flush=True)
    try:
        serve(workspace, args.host, args.port)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
