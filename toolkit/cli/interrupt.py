"""How a long command ends when Ctrl-C or a kill (SIGTERM) stops it: one line saying how to go
on, and exit code 130 (Ctrl-C) or 143 (SIGTERM), as shells report them, instead of click's bare
``Aborted!``.

While the toolkit's event loop runs, a signal cancels its work (:func:`toolkit.sync.request_stop`)
rather than raising ``KeyboardInterrupt`` wherever the main thread happens to be: raised inside
a fork's at-fork hooks, it left logging's lock held (the process hung) or was swallowed (the
run went on and exited 0). A second signal stops at once, as Python's own Ctrl-C does.
"""

from __future__ import annotations

import sys
import warnings
from typing import NoReturn

import click

from toolkit.sync import request_stop

#: The exit code of a command stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED_EXIT = 130
#: The exit code of a command stopped by SIGTERM (128 + SIGTERM).
TERMINATED_EXIT = 143

_terminated = False


def _quiet_cut_off_calls() -> None:
    # Model calls cut off mid-flight leave coroutines that were never awaited; Python warns
    # about each as the event loop is torn down. Nothing was lost: finished work is saved.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")


def _stop() -> None:
    _quiet_cut_off_calls()
    if not request_stop():
        raise KeyboardInterrupt


def terminate(signum: int, frame: object) -> None:
    """The SIGTERM handler: stop as Ctrl-C does, remembering the signal."""
    global _terminated
    _terminated = True
    _stop()


def interrupt(signum: int, frame: object) -> None:
    """The SIGINT (Ctrl-C) handler: cancel the running work, else Python's own
    KeyboardInterrupt, without the warnings of the calls it cuts off."""
    _stop()


def interrupted(how_to_go_on: str) -> NoReturn:
    """Print ``Interrupted. <how_to_go_on>`` on stderr and exit with :data:`INTERRUPTED_EXIT`,
    or :data:`TERMINATED_EXIT` after a SIGTERM."""
    click.echo(
        f"{'Terminated' if _terminated else 'Interrupted'}. {how_to_go_on}".rstrip(), err=True
    )
    _quiet_cut_off_calls()
    sys.exit(TERMINATED_EXIT if _terminated else INTERRUPTED_EXIT)
