"""Pydantic models at the sandbox's boundary: configuration, results, protections."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

#: Where scripts/install_system_deps.sh builds the sandbox interpreter.
DEFAULT_SANDBOX_VENV = Path("/opt/trace2skill/sandbox-venv")


class SandboxLimits(BaseModel):
    """Limits applied to each snippet (a ``run`` call may override them, within the hard caps)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu_s: float = Field(10.0, gt=0, description="CPU seconds one snippet may use.")
    wall_s: float = Field(30.0, gt=0, description="Wall-clock seconds one snippet may take.")
    memory_mb: int = Field(
        1024, gt=0, description="Address space (MiB) a snippet may add to the worker's baseline."
    )
    output_bytes: int = Field(
        20_000, gt=0, description="Bytes of stdout (and, separately, stderr) kept per snippet."
    )
    traceback_chars: int = Field(4000, gt=0, description="Characters of traceback kept.")


class SandboxConfig(BaseModel):
    """How the pool starts and confines its workers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: str | None = Field(
        None,
        description=(
            "Interpreter for the workers; None: $TRACE2SKILL_SANDBOX_PYTHON, else the venv that "
            "scripts/install_system_deps.sh builds, else the toolkit's own interpreter."
        ),
    )
    uid: int = Field(65534, ge=1, description="Unprivileged user (and group) the workers run as.")
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    worker_memory_mb: int = Field(
        4096, gt=0, description="Hard cap on a worker's whole address space (MiB)."
    )
    file_size_mb: int = Field(256, gt=0, description="Largest file a snippet may write (MiB).")
    open_files: int = Field(256, gt=0, description="Open file descriptors per process.")
    procs_per_worker: int = Field(
        32, gt=0, description="Processes/threads a worker may run; RLIMIT_NPROC is sized from it."
    )
    preload: tuple[str, ...] = Field(
        ("pandas", "openpyxl"), description="Modules each worker imports once at start."
    )
    max_sessions_per_worker: int = Field(
        200, gt=0, description="Sessions a worker serves before it is replaced (bounds drift)."
    )
    start_timeout_s: float = Field(60.0, gt=0, description="Time a worker may take to start.")
    grace_s: float = Field(
        3.0, ge=0, description="Extra wall time before the pool kills an unresponsive worker."
    )
    require_isolation: bool = Field(
        False, description="Refuse to start unless every protection is available."
    )


class SnippetError(BaseModel):
    """An exception raised by a snippet (or a limit it hit)."""

    type: str = Field(description="Exception class name, e.g. 'ZeroDivisionError'.")
    message: str = Field(description="str(exception), trimmed.")
    traceback: str = Field("", description="Traceback of the snippet's frames only, trimmed.")


class RunResult(BaseModel):
    """The outcome of one snippet: what the agent's ``python`` tool returns."""

    schema_version: int = Field(SCHEMA_VERSION, description="Version of this record's format.")
    stdout: str = Field("", description="Captured standard output (truncated with a note).")
    stderr: str = Field("", description="Captured standard error (truncated with a note).")
    stdout_truncated: bool = Field(False, description="stdout exceeded the output limit.")
    stderr_truncated: bool = Field(False, description="stderr exceeded the output limit.")
    error: SnippetError | None = Field(None, description="The snippet's exception, if any.")
    duration_s: float = Field(0.0, description="Wall-clock seconds of the snippet.")
    cpu_s: float = Field(0.0, description="CPU seconds the worker spent on the snippet.")
    timed_out: bool = Field(False, description="The wall-clock limit was hit.")
    cpu_exceeded: bool = Field(False, description="The CPU limit was hit.")
    memory_error: bool = Field(False, description="The snippet ran out of its memory limit.")
    killed: bool = Field(
        False,
        description=(
            "The worker was killed (overran the wall limit, died, or broke the protocol) and "
            "replaced; the session's variables are lost, its files are kept."
        ),
    )
    killed_processes: int = Field(0, description="Leftover processes killed after the snippet.")

    @property
    def ok(self) -> bool:
        """True when the snippet ran to completion without an exception."""
        return self.error is None

    def render(self) -> str:
        """The text an agent sees: output, then the error (if any)."""
        parts = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.stderr:
            parts.append("[stderr]\n" + self.stderr.rstrip("\n"))
        if self.error is not None:
            parts.append(
                self.error.traceback.rstrip("\n") or f"{self.error.type}: {self.error.message}"
            )
        return "\n".join(parts) if parts else "(no output)"


class Protections(BaseModel):
    """Which confinement the pool can apply here (probed at start; see ``check_protections``)."""

    schema_version: int = Field(SCHEMA_VERSION, description="Version of this record's format.")
    python: str = Field(description="Interpreter the workers run.")
    running_as_root: bool = Field(description="The toolkit runs as root (needed to confine).")
    unprivileged_user: bool = Field(
        description="Workers drop to the unprivileged uid (process limits apply, root's files "
        "are unreadable)."
    )
    network_namespace: bool = Field(description="Workers have no network.")
    pid_namespace: bool = Field(
        description="Workers see only their own processes (not the parent's environ)."
    )
    private_tmp: bool = Field(
        description="World-writable dirs (/tmp, /var/tmp, /dev/shm, /run/lock) are hidden and "
        "read-only; only the worker's own dir is writable."
    )
    rlimits: bool = Field(True, description="CPU, memory, file-size and process limits.")
    scrubbed_env: bool = Field(True, description="Workers get a minimal environment.")
    preload_ok: bool = Field(True, description="The preload modules import in the sandbox.")
    missing: list[str] = Field(
        default_factory=list, description="Why each unavailable protection is missing."
    )

    @property
    def full(self) -> bool:
        """True when every protection is in force."""
        return not self.missing

    def render(self) -> str:
        """Human-readable report (what a ``check`` CLI command prints)."""
        rows = [f"python: {self.python}"]
        for name in (
            "unprivileged_user",
            "network_namespace",
            "pid_namespace",
            "private_tmp",
            "rlimits",
            "scrubbed_env",
            "preload_ok",
        ):
            rows.append(f"{name}: {'yes' if getattr(self, name) else 'NO'}")
        rows.extend(f"missing: {reason}" for reason in self.missing)
        return "\n".join(rows)
