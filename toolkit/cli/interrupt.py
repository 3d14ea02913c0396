"""How a long command ends when Ctrl-C or a kill (SIGTERM) stops it: one line saying how to go
on, and exit code 130, instead of click's bare ``Aborted!``."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

#: The exit code of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report).
INTERRUPTED_EXIT = 130


def interrupted(how_to_go_on: str) -> NoReturn:
    """Print ``Interrupted. <how_to_go_on>`` on stderr and exit with :data:`INTERRUPTED_EXIT`."""
    click.echo(f"Interrupted. {how_to_go_on}", err=True)
    sys.exit(INTERRUPTED_EXIT)
