"""CLI command: ``trace2skill app`` (serve the Streamlit analytics app over a runs folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from toolkit.errors import ToolkitError


def streamlit_command(port: int, host: str, browser: bool) -> list[str]:
    """The ``streamlit run`` command line serving the app's entry script."""
    from toolkit.app import main as app_main

    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(Path(app_main.__file__).resolve()),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "false" if browser else "true",
        "--browser.gatherUsageStats",
        "false",
        # Magic (bare expressions shown) parses every page with ast.parse in its session's
        # thread; on CPython 3.11.7 concurrent AST conversions can fail with "AST constructor
        # recursion depth mismatch" (gh-106905). The pages call st.* explicitly.
        "--runner.magicEnabled",
        "false",
        # Streamlit's deploy button and developer menu are no use to a reader of runs.
        "--client.toolbarMode",
        "viewer",
    ]


@click.command("app")
@click.argument(
    "runs_dir",
    required=False,
    default=Path("runs"),
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8501, show_default=True,
    help="Port to serve on.",
)  # fmt: skip
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 to share it on your network).",
)
@click.option(
    "--browser/--no-browser",
    default=True,
    show_default=True,
    help="Open the app in your web browser.",
)
def app_command(runs_dir: Path, port: int, host: str, browser: bool) -> None:
    """Open the analytics app on RUNS_DIR (default runs/) in your browser.

    \b
    Pages: runs (pass rate of S0 and S* with CIs, tasks that flipped), conditions
    (protocols, skill versions, models and deliveries of one suite side by side:
    pass rate with CI, s/task, tokens/task, stop reasons; two paired on their shared
    tasks, with McNemar's p and the tasks each passed alone), skill evolution (S0 vs
    S* diff, each line of S* with the merge that wrote it and its support),
    consolidation tree, patch attribution (per-edit effects with CIs), section usage
    (heatmap, pruning candidates), trajectories (step by step) and cost. Filters live
    in the URL, so a view can be shared by copying its address.
    The run index is brought up to date first (only changed runs are read).

    \b
    Examples:
      trace2skill app
      trace2skill app runs/ --port 8502 --no-browser
      trace2skill app benchmarks/results/protocols   (the measured agent protocols)
      streamlit run app.py          (the same app, from a clone of the repository)
    """
    from toolkit.index import build_index

    given = click.get_current_context().get_parameter_source("runs_dir")
    if given is not click.core.ParameterSource.DEFAULT and not runs_dir.is_dir():
        # Only the default runs/ may be missing (a new user's first look): a folder named
        # on the command line that is not there is a typo, not an empty app.
        raise ToolkitError(f"{runs_dir} is not a folder of runs")
    if runs_dir.is_dir() and any(runs_dir.glob("*/manifest.json")):
        report = build_index(runs_dir, progress=True)
        for problem in report.problems:
            click.echo(f"Warning: {problem}", err=True)
    else:
        click.echo(f"No runs in {runs_dir} yet: the app will say how to make one.", err=True)
    _check_port(host, port)
    env = {**os.environ, "TRACE2SKILL_RUNS_DIR": str(runs_dir.resolve())}
    click.echo(f"Serving the app on http://{host}:{port} (Ctrl+C stops it)")
    try:
        code = subprocess.call(streamlit_command(port, host, browser), env=env)
    except KeyboardInterrupt:
        code = 0
    except OSError as exc:
        raise ToolkitError(f"could not start streamlit: {exc}") from None
    if code:
        raise ToolkitError(f"streamlit exited with status {code}")


def _check_port(host: str, port: int) -> None:
    """Refuse a port another program holds before saying the app is served there."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ToolkitError(f"--host {host}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            raise ToolkitError(
                f"port {port} on {host} is in use (another app?); pick another with --port"
            ) from None


COMMANDS = [app_command]
