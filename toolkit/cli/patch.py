"""CLI commands: patch (being written)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
