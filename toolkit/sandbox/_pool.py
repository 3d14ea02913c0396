"""The pool of persistent sandbox workers and the per-rollout sessions that borrow them.

Data flow: ``SandboxPool.start`` probes the protections, makes a base dir (root-owned, 0711:
traversable, not listable; on tmpfs when it can, see ``default_base_parent``) and starts
``size`` workers, each with a private worker dir ``<base>/w-<random>`` (owned by the sandbox
uid, 0700) holding a copy of the worker program. ``pool.session(files=...)`` borrows an idle
worker, creates the task dir ``<worker-dir>/s-<random>`` with the caller's files (in a thread
unless on tmpfs), and tells the worker to start a fresh namespace there. ``Session.run``
sends one snippet and waits at most its wall limit plus a grace period; a worker that
overruns, dies or breaks the protocol is killed and replaced (the task dir moves to the new
worker). Opening runs in the background (``run`` and ``ready`` wait for it). On exit the
session ends in the background too: the worker resets, the task dir is deleted and the worker
returns to the pool, or is replaced if it is dirty (a thread left running) or has served its
quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import struct
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from toolkit.errors import SandboxError
from toolkit.sandbox._launch import (
    SETUP_HINT,
    LaunchPlan,
    count_user_tasks,
    make_preexec,
    minimal_env,
    probe,
    resolve_python,
)
from toolkit.sandbox._models import (
    Protections,
    RunResult,
    SandboxConfig,
    SandboxLimits,
    SnippetError,
)
from toolkit.sync import run_sync

_HEADER = struct.Struct(">I")
_PROTOCOL_SLACK = 1024 * 1024
BASE_DIR_ENV = "TRACE2SKILL_SANDBOX_DIR"
_MIN_SHM_BYTES = 1 << 30
_BASE_PREFIX = "t2s-sandbox-"
# In each pool's dir: "<pid> <start time>" of the process that owns it.
_OWNER_FILE = "owner"

#: Files given to a session: a directory (its contents are copied), or a map of relative path
#: to content.
TaskFiles = Path | str | Mapping[str, bytes | str] | None


class SandboxDegradedWarning(UserWarning):
    """The pool started without some protection (the message lists which)."""


class _WorkerGone(Exception):
    """The worker died, overran its deadline or sent garbage; it must be replaced."""

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class _Worker:
    """Parent-side handle of one worker process."""

    def __init__(self, proc: asyncio.subprocess.Process, worker_dir: Path, info: dict) -> None:
        self.proc = proc
        self.dir = worker_dir
        self.info = info
        self.sessions = 0
        self.dirty = False
        # A request was interrupted (cancelled, timed out): its reply may still arrive, so the
        # stream is out of step and the worker can only be retired.
        self.broken = False

    async def request(self, obj: dict[str, Any], timeout: float, max_bytes: int) -> dict:
        """Send one request and read its response, or raise _WorkerGone."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.broken:
            raise _WorkerGone("worker is out of step with the pool")
        body = json.dumps(obj).encode()
        try:
            self.proc.stdin.write(_HEADER.pack(len(body)) + body)
            await self.proc.stdin.drain()
            return await read_frame(self.proc.stdout, timeout, max_bytes)
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.broken = self.dirty = True
            raise _WorkerGone(f"worker exited ({exc})") from exc
        except BaseException:
            self.broken = self.dirty = True
            raise

    async def kill(self) -> None:
        """Kill the worker and everything in its namespace (or process group), then clean up."""
        # Signals go through os, not Popen.kill(): Popen polls first, and that poll could reap
        # the child before asyncio's watcher thread does, which then logs "Unknown child
        # process pid N, will report returncode 255" and reports 255 as the exit status.
        if self.proc.returncode is None:
            try:
                # The pgid holds unshare and the namespace's PID 1; --kill-child and PID 1's
                # death take every process in the namespace with them.
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 10)
        shutil.rmtree(self.dir, ignore_errors=True)


async def read_frame(reader: asyncio.StreamReader, timeout: float, max_bytes: int) -> dict:
    """Read one length-prefixed JSON frame within ``timeout`` seconds, or raise _WorkerGone."""

    async def read() -> dict:
        head = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(head)
        if size > max_bytes:
            raise _WorkerGone(f"worker sent an oversized response ({size} bytes)")
        data = json.loads(await reader.readexactly(size))
        if not isinstance(data, dict):
            raise _WorkerGone("worker sent a malformed response")
        return data

    try:
        # asyncio.timeout, not wait_for: no extra task per request on this hot path.
        async with asyncio.timeout(timeout):
            return await read()
    except TimeoutError as exc:
        raise _WorkerGone("worker did not answer in time", timed_out=True) from exc
    except asyncio.IncompleteReadError as exc:
        raise _WorkerGone("worker exited") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise _WorkerGone(f"worker sent a malformed response ({exc})") from exc


def _safe_relpath(name: str) -> PurePosixPath:
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts or rel == PurePosixPath("."):
        raise SandboxError(f"task file path {name!r} must be relative and stay inside the task dir")
    return rel


def _populate(task_dir: Path, files: TaskFiles) -> None:
    """Copy the caller's task files into a fresh task dir."""
    if files is None:
        return
    if isinstance(files, str | Path):
        src = Path(files)
        if src.is_dir():
            shutil.copytree(src, task_dir, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, task_dir / src.name)
        else:
            raise SandboxError(f"task files {src} not found (expected a directory or a file)")
        return
    for name, content in files.items():
        target = task_dir.joinpath(*_safe_relpath(name).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.write_text(content, encoding="utf-8")
        else:
            target.write_bytes(bytes(content))


def _prepare_dir(task_dir: Path, files: TaskFiles, uid: int | None) -> None:
    """Create a session's task dir with its files, owned by ``uid`` when given."""
    task_dir.mkdir(mode=0o700)
    _populate(task_dir, files)
    if uid is not None:
        _chown_tree(task_dir, uid)


async def _run_file_work(inline: bool, func: Any, *args: Any) -> None:
    """Run blocking file work: inline on a memory file system (microseconds, cheaper than a
    thread hop), else in a thread so the event loop keeps serving the other rollouts. A
    cancelled wait does not interrupt the thread: the work still finishes."""
    if inline:
        func(*args)
    else:
        await asyncio.to_thread(func, *args)


def default_base_parent() -> Path | None:
    """Where session dirs go: $TRACE2SKILL_SANDBOX_DIR, else /dev/shm when it is a roomy
    tmpfs, else the system temp dir (None).

    Every rollout creates and deletes a task dir; on a disk mounted with ``discard`` that
    costs ~3 ms of kernel time per dir (measured here), on tmpfs ~0.05 ms. A small /dev/shm
    (Docker's default is 64 MiB) is not used: snippets write their outputs there.
    """
    configured = os.environ.get(BASE_DIR_ENV)
    if configured:
        return Path(configured)
    shm = Path("/dev/shm")
    try:
        stats = os.statvfs(shm)
    except OSError:
        return None
    roomy = stats.f_bavail * stats.f_frsize >= _MIN_SHM_BYTES
    usable = roomy and os.access(shm, os.W_OK | os.X_OK) and _fs_type(shm) == "tmpfs"
    return shm if usable else None


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), None if it is gone.

    Together with the pid it names one process: a pid reused later has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def sweep_stale_pools(parent: Path) -> list[Path]:
    """Remove the dirs that pools of dead processes left in ``parent``; return them.

    ``close()`` removes a pool's dir, but a process killed with SIGKILL never runs it, and on
    /dev/shm what it leaves takes memory. A dir is removed only when its owner file names a
    process that no longer exists; a dir without one (a pool starting now) is left alone.
    """
    removed = []
    for base in parent.glob(f"{_BASE_PREFIX}*"):
        try:
            pid, started = (base / _OWNER_FILE).read_text().split()
        except (OSError, ValueError):
            continue
        if not pid.isdigit() or _process_start(int(pid)) == started:
            continue
        shutil.rmtree(base, ignore_errors=True)
        removed.append(base)
    return removed


def _fs_type(path: Path) -> str | None:
    """The type of the file system holding ``path`` (its longest mount point), from
    /proc/self/mounts; None when unknown."""
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return None
    target = str(path.resolve())
    best, kind = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), fields[2]
    return kind


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


class SandboxPool:
    """A pool of persistent, confined Python workers shared by concurrent rollouts.

    Example::

        async with SandboxPool(size=4) as pool:
            async with pool.session(files={"t.csv": "a,b\\n1,2\\n"}) as sb:
                result = await sb.run("import pandas as pd; print(pd.read_csv('t.csv'))")
    """

    def __init__(
        self,
        size: int = 2,
        config: SandboxConfig | None = None,
        *,
        base_dir: str | Path | None = None,
    ) -> None:
        """Configure the pool; workers start in ``start()`` / ``async with``."""
        if size < 1:
            raise SandboxError(f"pool size must be at least 1, got {size}")
        self.size = size
        self.config = config or SandboxConfig()
        self._base_parent = Path(base_dir) if base_dir is not None else None
        self._plan: LaunchPlan | None = None
        self._protections: Protections | None = None
        self._base: Path | None = None
        self._memory_fs = False  # the base is on tmpfs: file work is cheap enough to inline
        self._worker_script: bytes = b""
        self._nproc: int | None = None
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._tasks: set[asyncio.Task] = set()
        self._ending: set[asyncio.Task] = set()  # sessions ending in the background
        self._closed = False
        self.worker_start_s: list[float] = []

    @property
    def protections(self) -> Protections:
        """What confinement is in force (available after ``start``)."""
        if self._protections is None:
            raise SandboxError("the sandbox pool is not started")
        return self._protections

    async def __aenter__(self) -> SandboxPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Probe the protections, warn about missing ones, start the workers."""
        python = resolve_python(self.config)
        self._plan, self._protections = await asyncio.to_thread(probe, python, self.config.uid)
        if self._protections.missing:
            if self.config.require_isolation:
                raise SandboxError(
                    "sandbox isolation unavailable: " + "; ".join(self._protections.missing)
                )
            warnings.warn(
                "sandbox running with reduced protection: " + "; ".join(self._protections.missing),
                SandboxDegradedWarning,
                stacklevel=2,
            )
        self._worker_script = resources.files("toolkit.sandbox").joinpath("_worker.py").read_bytes()
        parent = self._base_parent or default_base_parent() or Path(tempfile.gettempdir())
        await asyncio.to_thread(sweep_stale_pools, parent)
        self._base = Path(tempfile.mkdtemp(prefix=_BASE_PREFIX, dir=parent)).resolve()
        (self._base / _OWNER_FILE).write_text(f"{os.getpid()} {_process_start(os.getpid())}")
        self._memory_fs = _fs_type(self._base) in ("tmpfs", "ramfs")
        # Traversable but not listable: a worker cannot discover another worker's dirs.
        os.chmod(self._base, 0o711)
        if self._plan.setpriv:
            existing = await asyncio.to_thread(count_user_tasks, self.config.uid)
            self._nproc = existing + self.config.procs_per_worker * self.size + 16
        try:
            workers = await asyncio.gather(*(self._start_worker() for _ in range(self.size)))
        except BaseException:
            await self.close()
            raise
        for worker in workers:
            self._idle.put_nowait(worker)

    async def close(self) -> None:
        """Kill every worker and remove the pool's directories."""
        self._closed = True
        # Let sessions finish ending (each request has its own timeout), so their task dirs
        # are removed and their workers retired in order.
        await asyncio.gather(*list(self._ending), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(*(w.kill() for w in list(self._all)), return_exceptions=True)
        self._all.clear()
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    async def _start_worker(self) -> _Worker:
        assert self._plan is not None and self._base is not None
        started = time.perf_counter()
        worker_dir = self._base / f"w-{secrets.token_hex(16)}"
        # Root-owned and not listable: the worker can enter it but not write or list there;
        # only its task dirs (created inside, owned by the sandbox user) are writable.
        worker_dir.mkdir(mode=0o711)
        os.chmod(worker_dir, 0o711)
        script = worker_dir / "worker.py"
        script.write_bytes(self._worker_script)
        os.chmod(script, 0o644)
        cmd = self._plan.command(str(script), str(worker_dir), self.config.preload)
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=minimal_env(str(worker_dir)),
                cwd=str(worker_dir),
                preexec_fn=make_preexec(self.config, self._nproc),
                start_new_session=True,
            )
        except OSError as exc:
            shutil.rmtree(worker_dir, ignore_errors=True)
            raise SandboxError(f"cannot start a sandbox worker ({exc}); {SETUP_HINT}") from exc
        worker = _Worker(proc, worker_dir, {})
        self._all.add(worker)
        try:
            assert proc.stdout is not None
            info = await read_frame(proc.stdout, self.config.start_timeout_s, _PROTOCOL_SLACK)
        except _WorkerGone as exc:
            stderr = b""
            with contextlib.suppress(Exception):
                await worker.kill()
                assert proc.stderr is not None
                stderr = await asyncio.wait_for(proc.stderr.read(4000), 2)
            self._all.discard(worker)
            detail = stderr.decode("utf-8", "replace").strip() or str(exc)
            raise SandboxError(f"sandbox worker failed to start: {detail}; {SETUP_HINT}") from exc
        if not info.get("ok"):
            await worker.kill()
            self._all.discard(worker)
            raise SandboxError(f"sandbox worker failed to start: {info.get('error')}")
        worker.info = info
        if info.get("preload_errors") and self._protections is not None:
            errors = info["preload_errors"]
            if self._protections.preload_ok:
                self._protections = self._protections.model_copy(
                    update={
                        "preload_ok": False,
                        "missing": [
                            *self._protections.missing,
                            f"preload failed in the sandbox ({errors}); {SETUP_HINT}",
                        ],
                    }
                )
                warnings.warn(
                    f"sandbox workers cannot import {sorted(errors)}: {errors}; {SETUP_HINT}",
                    SandboxDegradedWarning,
                    stacklevel=2,
                )
        self.worker_start_s.append(time.perf_counter() - started)
        return worker

    def _check_started(self) -> None:
        if self._closed or self._base is None:
            raise SandboxError("the sandbox pool is not started (use `async with SandboxPool()`)")

    async def _acquire(self) -> _Worker:
        self._check_started()
        worker = await self._idle.get()
        if worker is None:
            # A background replacement failed earlier; try again here, raising if it fails.
            worker = await self._start_worker()
        return worker

    def _release(self, worker: _Worker) -> None:
        worker.sessions += 1
        if self._closed:
            return  # close() kills every worker in self._all, this one included
        if worker.dirty or worker.sessions >= self.config.max_sessions_per_worker:
            self._spawn(self._retire(worker, replace=True))
        else:
            self._idle.put_nowait(worker)

    async def _end_session(self, worker: _Worker, task_dir: Path | None) -> None:
        """Tell ``worker`` its session is over, put it back (or retire it), remove the dir."""
        try:
            resp = await worker.request({"op": "end"}, 10 + self.config.grace_s, _PROTOCOL_SLACK)
            if not resp.get("ok") or resp.get("dirty"):
                worker.dirty = True
        except _WorkerGone:
            worker.dirty = True
        except asyncio.CancelledError:
            worker.dirty = True
            raise
        finally:
            self._release(worker)
            if task_dir is not None:
                await _run_file_work(self._memory_fs, shutil.rmtree, task_dir, True)

    def _spawn(self, coro: Any, group: set[asyncio.Task] | None = None) -> None:
        tasks = self._tasks if group is None else group
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _retire(self, worker: _Worker, replace: bool) -> None:
        await worker.kill()
        self._all.discard(worker)
        if replace and not self._closed:
            try:
                self._idle.put_nowait(await self._start_worker())
            except SandboxError:
                self._idle.put_nowait(None)

    def session(self, files: TaskFiles = None, *, limits: SandboxLimits | None = None) -> Session:
        """A fresh sandbox for one rollout: its own task dir (with ``files``) and namespace."""
        return Session(self, files, limits or self.config.limits)


class Session:
    """One rollout's sandbox: a fresh namespace and task dir on a borrowed worker."""

    def __init__(self, pool: SandboxPool, files: TaskFiles, limits: SandboxLimits) -> None:
        """Use ``pool.session(...)`` rather than constructing this directly."""
        self._pool = pool
        self._files = files
        self.limits = limits
        self._worker: _Worker | None = None
        self._dir: Path | None = None
        self._opening: asyncio.Task[None] | None = None
        self._acquired = False
        self._ran = False
        self._lock = asyncio.Lock()
        self.restarts = 0

    @property
    def path(self) -> Path:
        """The task dir (the snippet's cwd); files the agent wrote can be read from here.

        Available once the session is ready (``await session.ready()``; ``run`` waits too).
        """
        if self._dir is None:
            raise SandboxError("the sandbox session is not open (or not ready: await ready())")
        return self._dir

    async def ready(self) -> None:
        """Wait until the task dir holds the files and the worker's namespace is fresh.

        Raises:
            SandboxError: the session is not open, or setting it up failed.
        """
        if self._opening is None:
            raise SandboxError("the sandbox session is not open (use `async with pool.session()`)")
        # Shielded: a caller giving up must not abort the set-up half-way; __aexit__ ends it.
        await asyncio.shield(self._opening)

    async def list_files(self) -> list[str]:
        """Relative paths of the task dir's files, like :meth:`files`.

        Before any code ran these are the files the session was given, so a mapping's
        names come back without waiting for the set-up.
        """
        if isinstance(self._files, Mapping) and not self._ran:
            return sorted(_safe_relpath(name).as_posix() for name in self._files)
        await self.ready()
        return await asyncio.to_thread(self.files)

    def files(self) -> list[str]:
        """Relative paths of the regular files now in the task dir (symlinks are skipped)."""
        root = self.path
        found = []
        for dirpath, _dirnames, filenames in os.walk(root):
            for name in filenames:
                full = Path(dirpath, name)
                if full.is_file() and not full.is_symlink():
                    found.append(full.relative_to(root).as_posix())
        return sorted(found)

    def read_bytes(self, name: str) -> bytes:
        """Read a file the snippet wrote, refusing symlinks and paths leaving the task dir.

        The pool runs as root, so following a link the sandbox planted (to /etc/shadow, say)
        would leak what the sandbox itself cannot read.
        """
        rel = _safe_relpath(name)
        current = self.path
        for part in rel.parts:
            current = current / part
            if current.is_symlink():
                raise SandboxError(f"task file {name!r} is a symlink; refusing to follow it")
        if not current.is_file():
            raise SandboxError(f"task file {name!r} not found in the sandbox")
        fd = os.open(current, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            return f.read()

    async def __aenter__(self) -> Session:
        if self._opening is not None:
            raise SandboxError("this sandbox session is already open")
        self._pool._check_started()
        # Set up in the background: a worker may still be ending its previous session, and
        # the agent's first step is a model call, which this overlaps. run() waits for it.
        self._opening = asyncio.get_running_loop().create_task(self._open())
        return self

    async def _open(self) -> None:
        worker = await self._pool._acquire()
        self._acquired = True
        try:
            task_dir = worker.dir / f"s-{secrets.token_hex(16)}"
            self._dir = task_dir
            self._worker = worker
            uid = self._pool.config.uid if self._pool._plan and self._pool._plan.setpriv else None
            await _run_file_work(self._pool._memory_fs, _prepare_dir, task_dir, self._files, uid)
            await self._open_on(worker)
        except BaseException:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            if self._worker is not None:
                self._pool._release(self._worker)
            else:
                self._pool._release(worker)
            self._worker = None
            raise

    async def _open_on(self, worker: _Worker) -> None:
        try:
            resp = await worker.request(
                {"op": "session", "dir": str(self._dir)},
                self._pool.config.start_timeout_s,
                _PROTOCOL_SLACK,
            )
        except _WorkerGone as exc:
            worker.dirty = True
            raise SandboxError(f"sandbox worker failed to open a session: {exc}") from exc
        if not resp.get("ok"):
            worker.dirty = True
            raise SandboxError(f"sandbox worker refused the session: {resp}")

    async def __aexit__(self, *exc: object) -> None:
        opening, self._opening = self._opening, None
        if opening is not None:
            if not opening.done() and not self._acquired:
                # Over before it began (an analysis whose first reply was invalid): waiting on
                # would take a worker only to hand it back, and once the pool closes (a worker
                # released then is not put back) the wait would never end, nor close() with it.
                opening.cancel()
            # The rollout's outcome is settled: finishing any set-up still under way, ending
            # the worker's session (namespace reset, a garbage collection) and deleting the
            # task dir run in the background, off the rollout's critical path. The worker
            # rejoins the pool when done; ``pool.close()`` waits for all of it.
            self._pool._spawn(self._end(opening), self._pool._ending)

    async def _end(self, opening: asyncio.Task[None]) -> None:
        try:
            with contextlib.suppress(Exception):  # a failed set-up was reported to its waiter
                await opening
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this ending is cancelled, not (only) the set-up it waited for
        worker, self._worker = self._worker, None
        task_dir, self._dir = self._dir, None
        if worker is not None:
            await self._pool._end_session(worker, task_dir)

    async def run(
        self,
        code: str,
        *,
        cpu_s: float | None = None,
        wall_s: float | None = None,
        memory_mb: int | None = None,
        output_bytes: int | None = None,
    ) -> RunResult:
        """Run one snippet in this session's namespace; limits default to the session's.

        Calls on one session run one at a time, in order. A snippet's failure (exception,
        limit, crash) is in the result, never raised.
        """
        async with self._lock:
            await self.ready()
            self._ran = True
            return await self._run(code, cpu_s, wall_s, memory_mb, output_bytes)

    async def _run(
        self,
        code: str,
        cpu_s: float | None,
        wall_s: float | None,
        memory_mb: int | None,
        output_bytes: int | None,
    ) -> RunResult:
        if self._worker is None:
            raise SandboxError("the sandbox session is not open (use `async with pool.session()`)")
        lim = self.limits
        wall = wall_s if wall_s is not None else lim.wall_s
        out = output_bytes if output_bytes is not None else lim.output_bytes
        req = {
            "op": "run",
            "code": code,
            "cpu_s": cpu_s if cpu_s is not None else lim.cpu_s,
            "wall_s": wall,
            "memory_bytes": (memory_mb if memory_mb is not None else lim.memory_mb) * 1024 * 1024,
            "output_bytes": out,
            "traceback_chars": lim.traceback_chars,
        }
        if self._worker.broken:
            # An earlier call was cancelled mid-snippet: start over on a fresh worker first.
            await self._restart()
        worker = self._worker
        assert worker is not None
        try:
            resp = await worker.request(
                req,
                wall + self._pool.config.grace_s,
                2 * out + lim.traceback_chars * 4 + _PROTOCOL_SLACK,
            )
        except _WorkerGone as exc:
            return await self._recover(exc, wall)
        if not resp.get("ok"):
            return await self._recover(_WorkerGone(str(resp.get("protocol_error"))), wall)
        if resp.get("dirty"):
            worker.dirty = True
        try:
            return RunResult.model_validate(
                {k: v for k, v in resp.items() if k not in ("ok", "dirty")}
            )
        except ValueError as exc:
            return await self._recover(_WorkerGone(f"malformed result ({exc})"), wall)

    async def _restart(self) -> int | None:
        """Replace this session's worker, moving the task dir to the new one; exit status."""
        worker = self._worker
        assert worker is not None and self._dir is not None and self._pool._base is not None
        # Keep the task files: move them out before the old worker dir is removed.
        keep = self._pool._base / f"keep-{secrets.token_hex(8)}"
        os.rename(self._dir, keep)
        await worker.kill()
        self._pool._all.discard(worker)
        self.restarts += 1
        try:
            replacement = await self._pool._start_worker()
        except BaseException:
            shutil.rmtree(keep, ignore_errors=True)
            self._worker = None
            self._dir = None
            # The session held a pool slot: hand it back as "start one when needed".
            self._pool._idle.put_nowait(None)
            raise
        self._worker = replacement
        self._dir = replacement.dir / f"s-{secrets.token_hex(16)}"
        os.rename(keep, self._dir)
        await self._open_on(replacement)
        return worker.proc.returncode

    async def _recover(self, exc: _WorkerGone, wall: float) -> RunResult:
        """Replace a killed worker and report the snippet's fate."""
        code = await self._restart()
        if exc.timed_out:
            error = SnippetError(
                type="TimeoutError",
                message=f"wall-clock time limit of {wall} s exceeded; the sandbox was restarted "
                "(variables lost, files kept)",
            )
        else:
            how = f" (exit status {code})" if code is not None else ""
            error = SnippetError(
                type="SandboxCrash",
                message=f"the Python process died{how}: {exc}; the sandbox was restarted "
                "(variables lost, files kept)",
            )
        return RunResult(error=error, timed_out=exc.timed_out, killed=True, duration_s=wall)


@contextlib.asynccontextmanager
async def _one_session(files: TaskFiles, config: SandboxConfig | None) -> AsyncIterator[Session]:
    async with SandboxPool(size=1, config=config) as pool, pool.session(files) as sb:
        yield sb


def run_python(
    code: str, files: TaskFiles = None, *, config: SandboxConfig | None = None
) -> RunResult:
    """Run one snippet in a fresh one-worker pool (synchronous convenience; ~0.4 s to start)."""

    async def go() -> RunResult:
        async with _one_session(files, config) as sb:
            return await sb.run(code)

    return run_sync(go())


def check_protections(config: SandboxConfig | None = None) -> Protections:
    """Probe which protections a pool would have here (for a CLI ``check`` command)."""
    cfg = config or SandboxConfig()
    return probe(resolve_python(cfg), cfg.uid)[1]
