"""How a long command ends when Ctrl-C or a kill (SIGTERM) stops it: one line saying how to go
on, and exit code 130 (Ctrl-C) or 143 (SIGTERM), as shells report them, instead of click's bare
``Aborted!``."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

#: The exit code of a command stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED_EXIT = 130
#: The exit code of a command stopped by SIGTERM (128 + SIGTERM).
TERMINATED_EXIT = 143

_terminated = False


def terminate(signum: int, frame: object) -> None:
    """The SIGTERM handler: stop as Ctrl-C does (KeyboardInterrupt), remembering the signal."""
    global _terminated
    _terminated = True
    raise KeyboardInterrupt


def interrupted(how_to_go_on: str) -> NoReturn:
    """Print ``Interrupted. <how_to_go_on>`` on stderr and exit with :data:`INTERRUPTED_EXIT`,
    or :data:`TERMINATED_EXIT` after a SIGTERM."""
    click.echo(f"{'Terminated' if _terminated else 'Interrupted'}. {how_to_go_on}", err=True)
    sys.exit(TERMINATED_EXIT if _terminated else INTERRUPTED_EXIT)
