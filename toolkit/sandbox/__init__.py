"""The sandboxed Python tool: a pool of persistent, confined workers reused across rollouts.

Example::

    async with SandboxPool(size=4) as pool:
        async with pool.session(files=task_dir) as sb:
            result = await sb.run("import pandas as pd; print(pd.read_csv('table.csv').shape)")
            print(result.render())
"""

from toolkit.sandbox._models import (
    Protections,
    RunResult,
    SandboxConfig,
    SandboxLimits,
    SnippetError,
)
from toolkit.sandbox._pool import (
    SandboxDegradedWarning,
    SandboxPool,
    Session,
    TaskFiles,
    check_protections,
    run_python,
)

__all__ = [
    "Protections",
    "RunResult",
    "SandboxConfig",
    "SandboxDegradedWarning",
    "SandboxLimits",
    "SandboxPool",
    "Session",
    "SnippetError",
    "TaskFiles",
    "check_protections",
    "run_python",
]
