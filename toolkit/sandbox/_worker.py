"""The sandbox worker: a persistent Python process that runs snippets for the pool.

This file runs *inside* the sandbox, under the sandbox interpreter (not the toolkit's), so it
imports only the standard library (pandas and openpyxl are preloaded when present). The pool
copies it into the worker's private directory and starts it as
``python -I worker.py <worker-dir> <preload,modules>``.

Protocol: frames of a 4-byte big-endian length followed by UTF-8 JSON, requests on the
process's original stdin and responses on its original stdout. Both are moved to other file
descriptors at start, so snippet code (and its subprocesses) writing to fd 1/2 lands in the
output capture instead, and reading fd 0 reads /dev/null.

Requests (``op``): ``session`` (fresh namespace, chdir to the task dir), ``run`` (one snippet
with its limits), ``end`` (drop the namespace, kill leftovers). End of input: exit.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import gc
import json
import os
import resource
import signal
import struct
import sys
import threading
import time
import traceback
import warnings

_HEADER = struct.Struct(">I")
_MAX_REQUEST = 64 * 1024 * 1024
_SNIPPET = "<snippet>"
_MAIN_PID = os.getpid()
_RESERVE_BYTES = 8 * 1024 * 1024


class CPUTimeExceeded(BaseException):
    """Raised by the SIGXCPU handler (BaseException so ``except Exception`` can't swallow it)."""


class WallTimeExceeded(BaseException):
    """Raised by the SIGALRM handler when a snippet overruns its wall-clock limit."""


def _on_sigxcpu(signum, frame):
    raise CPUTimeExceeded("CPU time limit exceeded")


def _on_sigalrm(signum, frame):
    raise WallTimeExceeded("wall-clock time limit exceeded")


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(fd):
    head = _read_exact(fd, _HEADER.size)
    if head is None:
        return None
    (size,) = _HEADER.unpack(head)
    if size > _MAX_REQUEST:
        return None
    body = _read_exact(fd, size)
    return None if body is None else json.loads(body)


def _send(fd, obj):
    body = json.dumps(obj).encode("utf-8", "replace")
    data = _HEADER.pack(len(body)) + body
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Capture:
    """sys.stdout/sys.stderr during a snippet: writes through to fd 1/2, capped in size.

    Writing to the same file as subprocesses keeps Python's and the children's output in
    order; the cap stops a print loop from filling the capture file.
    """

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, fd):
        self._fd = fd
        self.limit = 0
        self.written = 0
        self.dropped = 0
        self.buffer = _BinaryCapture(self)

    def reset(self, limit):
        self.limit = limit
        self.written = 0
        self.dropped = 0

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.write_bytes(s.encode("utf-8", "replace"))
        return len(s)

    def write_bytes(self, data):
        room = self.limit - self.written
        if room <= 0:
            self.dropped += len(data)
            return
        part = data[:room]
        try:
            os.write(self._fd, part)
        except OSError:
            self.dropped += len(data)
            return
        self.written += len(part)
        self.dropped += len(data) - len(part)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        return self._fd

    def readable(self):
        return False

    def writable(self):
        return True

    def seekable(self):
        return False

    @property
    def closed(self):
        return False


class _BinaryCapture:
    """``sys.stdout.buffer`` for code that writes bytes; shares the text capture's cap."""

    def __init__(self, text):
        self._text = text

    def write(self, data):
        data = bytes(data)
        self._text.write_bytes(data)
        return len(data)

    def flush(self):
        pass

    def fileno(self):
        return self._text.fileno()

    def isatty(self):
        return False

    def writable(self):
        return True


def _memfd(name):
    """An anonymous file for captured output (no path another process could open)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create(name, 0)
    import tempfile

    fd, path = tempfile.mkstemp(prefix=name)
    os.unlink(path)
    return fd


def _drain_capture(fd, capture):
    """Read what fd 1/2 received this snippet: (text, truncated), then empty it."""
    size = os.fstat(fd).st_size
    limit = max(capture.limit, 0)
    data = os.pread(fd, min(size, limit), 0) if size else b""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    hidden = max(size - limit, 0) + capture.dropped
    text = data.decode("utf-8", "replace")
    if hidden:
        text += f"\n[output truncated: {hidden} more bytes not shown]"
    return text, hidden > 0


def _pandas_options():
    """Snapshot of pandas' option values (empty without pandas)."""
    pd = sys.modules.get("pandas")
    if pd is None:
        return {}
    try:
        from pandas._config import config

        keys = list(config._registered_options)
    except Exception:
        return {}
    values = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in keys:
            with contextlib.suppress(Exception):
                values[key] = pd.get_option(key)
    return values


def _current_vm_bytes():
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _kill_leftovers():
    """Kill every process the snippet left behind and reap them; returns how many were killed."""
    killed = 0
    if os.getpid() == 1:
        # PID 1 of our own PID namespace: kill(-1) reaches exactly the snippet's processes.
        for _ in range(200):
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                break
            except PermissionError:
                break
            killed += _reap(block=True)
    else:
        # No PID namespace: as a child subreaper (set at start) every orphan the snippet
        # leaves is re-parented to us, so its processes are exactly our descendants.
        for _ in range(100):
            found = _descendants(os.getpid())
            if not found:
                break
            for pid in found:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(0.01)
            _reap(block=False)
    _reap(block=False)
    return killed


def _descendants(root):
    """Live (non-zombie) processes below ``root``, from /proc's parent links."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _become_subreaper():
    """PR_SET_CHILD_SUBREAPER: orphans of the snippet come back to us (Linux; best effort)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reap(block):
    reaped = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return reaped
        except InterruptedError:
            continue
        if pid == 0:
            return reaped
        reaped += 1


def _code_objects(*codes):
    """Every code object compiled from one snippet (its functions and classes too)."""
    found, todo = set(), [c for c in codes if c is not None]
    while todo:
        code = todo.pop()
        found.add(code)
        todo.extend(c for c in code.co_consts if isinstance(c, type(code)))
    return found


def _trim_traceback(exc, max_chars, source="", codes=frozenset()):
    """The snippet's own frames (with their source line when the frame is from this
    snippet), then the exception. Worker and library frames (pandas internals) and chained
    exceptions are left out: they buried the one line that matters under a kilobyte of
    noise, and small models repeated the failing code. Keeps the end if still too long."""
    lines = source.splitlines()
    frames = []
    outside = None  # the library file the exception came out of, when not the snippet
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == _SNIPPET:
            line = ""
            if code in codes and 0 < tb.tb_lineno <= len(lines):
                line = lines[tb.tb_lineno - 1]
            frames.append(traceback.FrameSummary(_SNIPPET, tb.tb_lineno, code.co_name, line=line))
            outside = None
        elif frames:
            outside = code.co_filename
        tb = tb.tb_next
    text = ""
    if frames:
        text = "Traceback (most recent call last):\n"
        text += "".join(traceback.StackSummary.from_list(frames).format())
        if outside:
            where = outside.partition("site-packages/")[2] or os.path.basename(outside)
            text += f"  (raised inside {where})\n"
    text += "".join(traceback.format_exception_only(type(exc), exc))
    if len(text) > max_chars:
        text = "[traceback trimmed]\n..." + text[-max_chars:]
    return text


class Worker:
    """The worker's state: the current session and the pristine interpreter state."""

    def __init__(self, worker_dir, preload):
        self.worker_dir = worker_dir
        self.namespace = None
        self.pristine = True
        self.session_dir = None
        self.preloaded = {}
        self.preload_errors = {}
        for name in preload:
            try:
                module = __import__(name)
                self.preloaded[name] = getattr(module, "__version__", "")
            except Exception as exc:  # missing module: report, keep going
                self.preload_errors[name] = f"{type(exc).__name__}: {exc}"
        self.base_environ = dict(os.environ)
        self.base_builtins = dict(vars(builtins))
        self.base_path = list(sys.path)
        self.base_warning_filters = list(warnings.filters)
        self.base_threads = threading.active_count()
        self.pandas_options = _pandas_options()
        # Startup objects (pandas, numpy) move to the permanent generation, so the full
        # collection after each session only scans what the session created.
        gc.collect()
        gc.freeze()
        self.reserve = bytearray(_RESERVE_BYTES)
        self.out_fd = _memfd("stdout")
        self.err_fd = _memfd("stderr")
        os.dup2(self.out_fd, 1)
        os.dup2(self.err_fd, 2)
        self.out = _Capture(1)
        self.err = _Capture(2)
        sys.stdout = self.out
        sys.stderr = self.err

    def ready_info(self):
        return {
            "ok": True,
            "pid": os.getpid(),
            "uid": os.getuid(),
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "preloaded": self.preloaded,
            "preload_errors": self.preload_errors,
        }

    def _reset_interpreter(self):
        """Undo the common ways a snippet changes shared state (env, cwd, builtins, options)."""
        os.environ.clear()
        os.environ.update(self.base_environ)
        # Never clear() the builtins dict: the code doing the restore needs it.
        live = builtins.__dict__
        for name in [name for name in live if name not in self.base_builtins]:
            del live[name]
        live.update(self.base_builtins)
        sys.path[:] = self.base_path
        sys.stdout = self.out
        sys.stderr = self.err
        warnings.filters[:] = self.base_warning_filters
        mutated = getattr(warnings, "_filters_mutated", None)  # private; clears filter caches
        if mutated is not None:
            mutated()
        pd = sys.modules.get("pandas")
        if pd is not None and self.pandas_options:
            # Only put back what changed: pd.reset_option("all") is slow, warns, and fails
            # half-way without matplotlib.
            for key, value in self.pandas_options.items():
                with warnings.catch_warnings(), contextlib.suppress(Exception):
                    warnings.simplefilter("ignore")
                    if pd.get_option(key) is not value and pd.get_option(key) != value:
                        pd.set_option(key, value)

    def start_session(self, req):
        # end_session (or startup) already reset the interpreter and nothing ran since.
        if not self.pristine:
            self._reset_interpreter()
        self.pristine = False
        self.session_dir = req["dir"]
        os.chdir(self.session_dir)
        os.environ["HOME"] = self.session_dir
        os.environ["TMPDIR"] = self.session_dir
        self.namespace = {"__name__": "__main__", "__builtins__": builtins}
        return {"ok": True}

    def end_session(self, req):
        if self.namespace is not None:
            # Functions hold their globals (this dict): clearing it breaks those cycles, so
            # the session's data is freed now, not at some later collection.
            self.namespace.clear()
        self.namespace = None
        killed = _kill_leftovers()
        os.chdir(self.worker_dir)
        self._reset_interpreter()
        gc.collect()
        # What survives a full collection once the namespace is gone is long-lived (modules
        # the snippets imported, such as pandas' lazily loaded parsers): freeze it too, so
        # later collections do not rescan it (an unfrozen pandas heap takes ~25 ms to scan).
        gc.freeze()
        self.pristine = True
        return {"ok": True, "killed": killed, "dirty": self._dirty()}

    def _dirty(self):
        # A thread the snippet started keeps running after the snippet: retire this worker.
        return threading.active_count() > self.base_threads

    def run(self, req):
        if self.namespace is None:
            return {"ok": False, "protocol_error": "run outside a session"}
        code = req["code"]
        output_bytes = int(req["output_bytes"])
        self.out.reset(output_bytes)
        self.err.reset(output_bytes)
        # Drop anything written between snippets (resets, stray writes): not this snippet's.
        for fd in (self.out_fd, self.err_fd):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        sys.stdout = self.out
        sys.stderr = self.err
        error = None
        timed_out = cpu_exceeded = memory_error = False
        start_wall = time.perf_counter()
        start_cpu = _cpu_seconds()
        soft_as, hard_as = resource.getrlimit(resource.RLIMIT_AS)
        try:
            tree = compile(code, _SNIPPET, "exec", ast.PyCF_ONLY_AST)
            echo = None
            if tree.body and isinstance(tree.body[-1], ast.Expr) and req.get("echo_last", True):
                echo = ast.Expression(tree.body.pop().value)
            body = compile(tree, _SNIPPET, "exec")
            last = compile(echo, _SNIPPET, "eval") if echo is not None else None
        except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
            error = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": "".join(traceback.format_exception_only(type(exc), exc)),
            }
        else:
            try:
                self._apply_limits(req, hard_as)
                try:
                    exec(body, self.namespace)
                    if last is not None:
                        value = eval(last, self.namespace)
                        if value is not None:
                            self.out.write(repr(value) + "\n")
                finally:
                    if os.getpid() != _MAIN_PID:
                        # A forked child of the snippet must never run the worker loop.
                        os._exit(0)
                    self._clear_limits(soft_as, hard_as)
            except CPUTimeExceeded:
                self._clear_limits(soft_as, hard_as)
                cpu_exceeded = True
                error = {
                    "type": "CPUTimeExceeded",
                    "message": f"CPU time limit of {req['cpu_s']} s exceeded",
                    "traceback": "",
                }
            except WallTimeExceeded:
                self._clear_limits(soft_as, hard_as)
                timed_out = True
                error = {
                    "type": "TimeoutError",
                    "message": f"wall-clock time limit of {req['wall_s']} s exceeded",
                    "traceback": "",
                }
            except BaseException as exc:  # the snippet's error is data, not the worker's
                self._clear_limits(soft_as, hard_as)
                if isinstance(exc, MemoryError):
                    memory_error = True
                    self.reserve = None
                    gc.collect()
                error = {
                    "type": type(exc).__name__,
                    "message": str(exc)[:2000],
                    "traceback": _trim_traceback(
                        exc,
                        int(req.get("traceback_chars", 4000)),
                        code,
                        _code_objects(body, last),
                    ),
                }
        duration = time.perf_counter() - start_wall
        cpu_used = _cpu_seconds() - start_cpu
        sys.stdout = self.out
        sys.stderr = self.err
        killed = _kill_leftovers()
        if self.reserve is None:
            with contextlib.suppress(MemoryError):
                self.reserve = bytearray(_RESERVE_BYTES)
        stdout, out_trunc = _drain_capture(self.out_fd, self.out)
        stderr, err_trunc = _drain_capture(self.err_fd, self.err)
        return {
            "ok": True,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_truncated": out_trunc,
            "stderr_truncated": err_trunc,
            "error": error,
            "duration_s": duration,
            "cpu_s": cpu_used,
            "timed_out": timed_out,
            "cpu_exceeded": cpu_exceeded,
            "memory_error": memory_error,
            "killed_processes": killed,
            "dirty": self._dirty(),
        }

    def _apply_limits(self, req, hard_as):
        """Per-snippet limits: CPU from now, address space on top of the current size, wall."""
        cpu = float(req["cpu_s"])
        soft_cpu = int(_cpu_seconds() + cpu + 0.999)
        resource.setrlimit(resource.RLIMIT_CPU, (soft_cpu, resource.RLIM_INFINITY))
        memory = int(req["memory_bytes"])
        if memory > 0:
            soft = _current_vm_bytes() + memory
            if hard_as != resource.RLIM_INFINITY:
                soft = min(soft, hard_as)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard_as))
        signal.setitimer(signal.ITIMER_REAL, float(req["wall_s"]))

    def _clear_limits(self, soft_as, hard_as):
        signal.setitimer(signal.ITIMER_REAL, 0)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(
                resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            )
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (hard_as, hard_as))


def main():
    req_fd = os.dup(0)
    resp_fd = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    worker_dir = sys.argv[1]
    preload = [m for m in (sys.argv[2] if len(sys.argv) > 2 else "").split(",") if m]
    os.chdir(worker_dir)
    if os.getpid() != 1:
        _become_subreaper()
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    signal.signal(signal.SIGALRM, _on_sigalrm)
    # Over-long files fail with EFBIG in the worker instead of killing it.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # As PID 1 the default SIGCHLD disposition is fine (we reap explicitly).
    try:
        worker = Worker(worker_dir, preload)
    except BaseException as exc:
        _send(resp_fd, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _send(resp_fd, worker.ready_info())
    handlers = {"session": worker.start_session, "run": worker.run, "end": worker.end_session}
    while True:
        try:
            req = _recv(req_fd)
        except (ValueError, OSError):
            return 2
        if req is None:
            return 0
        handler = handlers.get(req.get("op"))
        if handler is None:
            resp = {"ok": False, "protocol_error": f"unknown op {req.get('op')!r}"}
        else:
            try:
                resp = handler(req)
            except BaseException as exc:  # keep serving; the pool decides what to do
                if os.getpid() != _MAIN_PID:
                    os._exit(0)
                resp = {"ok": False, "protocol_error": f"{type(exc).__name__}: {exc}"}
        try:
            _send(resp_fd, resp)
        except MemoryError:
            worker.reserve = None
            gc.collect()
            _send(resp_fd, {"ok": False, "protocol_error": "MemoryError while sending"})


if __name__ == "__main__":
    sys.exit(main())
