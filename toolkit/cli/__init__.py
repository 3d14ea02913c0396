"""The ``trace2skill`` command line: a thin layer over the Python API.

Each command group lives in its own module of this package and is registered here.
User mistakes raise :class:`toolkit.errors.ToolkitError`; they are printed as one line
(``Error: ...``, or the error's own label for an outcome that is no error) with its exit code
(1 unless the error names another). ``-v`` (before or after the command) shows the
traceback as well.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from typing import Any

import click

from toolkit.errors import ToolkitError, ToolkitNotice


def _show_notice(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Print a :class:`ToolkitNotice` as one ``Note:`` line; other warnings as usual."""
    if issubclass(category, ToolkitNotice):
        click.echo(f"Note: {message}", err=True)
    else:
        _default_showwarning(message, category, *args, **kwargs)


_default_showwarning = warnings.showwarning


def _stop_on_terminate() -> None:
    """A kill (SIGTERM: ``timeout``, ``docker stop``, a CI runner's cancel) stops a command as
    Ctrl-C does: a running stage records itself interrupted, files stay whole, and the
    command says how to resume. Without it Python dies at once and the run reads as running."""

    from toolkit.cli.interrupt import interrupt, terminate

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminate)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, interrupt)


_VERBOSE_FLAGS = ("-v", "--verbose")


class _Group(click.Group):
    """Turns ToolkitError into one clear line instead of a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # ``-v`` is the root's option, but users add it to the command that failed
        # (``trace2skill eval ... -v``): taken from anywhere before ``--``. No subcommand
        # has a -v of its own.
        if ctx.parent is None:
            end = args.index("--") if "--" in args else len(args)
            flags = [a for a in args[:end] if a in _VERBOSE_FLAGS]
            if flags:
                args = flags[:1] + [a for a in args[:end] if a not in _VERBOSE_FLAGS] + args[end:]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        warnings.showwarning = _show_notice
        _stop_on_terminate()
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            if ctx.find_root().params.get("verbose"):
                raise
            click.echo(f"{exc.label}: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            # A command with nothing to resume (llm ask, report...): the same exit code as
            # the long ones, not click's "Aborted!" and 1.
            from toolkit.cli.interrupt import interrupted

            interrupted("")
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as other command-line tools do.
            # Python would complain again flushing stdout at exit, so point it at /dev/null.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)  # 128 + SIGPIPE
        except OSError as exc:
            # A path the user gave that cannot be made, read or written (not a directory, no
            # permission, disk full) is their mistake to fix, not a traceback to read.
            if ctx.find_root().params.get("verbose") or exc.strerror is None:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"Error: {exc.strerror}{where} (-v shows where)", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v", "--verbose", is_flag=True,
    help="Show full tracebacks on errors and log each retried model call (anywhere on the line).",
)  # fmt: skip
@click.version_option(package_name="trace2skill")
def main(verbose: bool) -> None:
    """Evolve agent skills from execution trajectories, reviewed like code in git.

    \b
    Examples (the method end to end; each stage also has its own command):
      trace2skill model install
      trace2skill evolve skills/wikitq-table-qa --suite wikitq --evolve-limit 60 --test-limit 100
      trace2skill ablate runs/<run> --top 3       # what each edit of S* does
      trace2skill app runs                        # explore runs, patches and attribution
      trace2skill pr runs/<run> --dry-run         # the pull request a reviewer would get
    \b
    Examples of single steps:
      trace2skill skill validate skills/gsm8k-math
      trace2skill patch apply fix.json skills/gsm8k-math --dry-run
      trace2skill eval --skill skills/gsm8k-math --suite gsm8k --limit 20
      trace2skill compare none skills/gsm8k-math --suite gsm8k --limit 20
      trace2skill analyse runs/gsm8k-s0 --analyst combined
      trace2skill consolidate runs/gsm8k-s0
    """
    if verbose:
        import logging

        # Retries of model calls (a rate limit, a 5xx, a timeout) on stderr, as they happen.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        log = logging.getLogger("toolkit")
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _register() -> None:
    # Each module of this package exports COMMANDS, the click commands/groups it adds.
    from toolkit.cli import (
        analyse,
        app,
        attribution,
        consolidate,
        evaluate,
        evolve,
        index,
        llm,
        memory,
        model,
        patch,
        pr,
        repo,
        rollout,
        skill,
        tasks,
    )

    modules = (skill, patch, repo, llm, model, tasks, rollout, evaluate, index)
    for module in (*modules, analyse, consolidate, evolve, memory, attribution, app, pr):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
