"""trace2skill: evolve agent skills from trajectories, with every step kept in git.

The public Python API is re-exported here so a notebook calls what the CLI calls.
"""

from __future__ import annotations

__version__ = "0.1.0"
