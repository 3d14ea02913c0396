"""The sandboxed Python tool: normal use, and every escape contained while the pool goes on.

Most tests share one pool (started once, on a private event loop) so they also show that the
same workers keep serving after each escape attempt. They need root and the sandbox venv
(`scripts/install_system_deps.sh`, which `make test` runs first); without them the confinement
tests are skipped and the degraded-mode tests still run.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from toolkit.errors import SandboxError
from toolkit.sandbox import (
    RunResult,
    SandboxConfig,
    SandboxDegradedWarning,
    SandboxLimits,
    SandboxPool,
    Session,
    check_protections,
    run_python,
)

SECRET_NAME = "T2S_TEST_PLANTED_SECRET"
SECRET_VALUE = "hunter2-" + "x9q7"  # built at run time so a grep of the source can't match it

FULL = check_protections()


def needs(*protections: str) -> pytest.MarkDecorator:
    """Skip unless these protections are in force here (each test needs only its own)."""
    absent = [name for name in protections if not getattr(FULL, name)]
    return pytest.mark.skipif(
        bool(absent),
        reason=f"sandbox protections {absent} unavailable here: " + "; ".join(FULL.missing),
    )


Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def pool(loop: asyncio.AbstractEventLoop) -> Iterator[SandboxPool]:
    # The planted secret is in the parent's environment while the workers start and run.
    os.environ[SECRET_NAME] = SECRET_VALUE
    config = SandboxConfig(limits=SandboxLimits(cpu_s=2, wall_s=4, output_bytes=2000), grace_s=2)
    pool = SandboxPool(size=2, config=config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxDegradedWarning)
        loop.run_until_complete(pool.start())
    yield pool
    loop.run_until_complete(pool.close())
    os.environ.pop(SECRET_NAME, None)


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Runner:
    return loop.run_until_complete


async def _in_session(pool: SandboxPool, code: str, files: Any = None, **limits: Any) -> RunResult:
    async with pool.session(files) as sb:
        return await sb.run(code, **limits)


def _assert_pool_works(pool: SandboxPool, run: Runner) -> None:
    async def check() -> None:
        # Both workers, several sessions: each must still answer normally.
        for _ in range(3):
            results = await asyncio.gather(
                _in_session(pool, "print(6 * 7)"), _in_session(pool, "print(6 * 7)")
            )
            for result in results:
                assert result.error is None, result.render()
                assert result.stdout == "42\n"

    run(check())


# --- normal use -------------------------------------------------------------------------------


def test_pandas_reads_csv_in_task_dir(pool: SandboxPool, run: Runner) -> None:
    rows = "city,pop\n" + "".join(f"c{i},{i * 10}\n" for i in range(100))
    result = run(
        _in_session(
            pool,
            "import pandas as pd\ndf = pd.read_csv('table.csv')\nprint(len(df), df['pop'].sum())",
            files={"table.csv": rows},
        )
    )
    assert result.error is None, result.render()
    assert result.stdout == f"100 {sum(i * 10 for i in range(100))}\n"


def test_task_files_from_a_directory(pool: SandboxPool, run: Runner, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("alpha")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01")
    result = run(
        _in_session(
            pool,
            "print(open('sub/a.txt').read(), len(open('b.bin','rb').read()))",
            files=tmp_path,
        )
    )
    assert result.stdout == "alpha 2\n"


def test_variables_persist_within_a_session_and_last_expression_echoes(
    pool: SandboxPool, run: Runner
) -> None:
    async def scenario() -> list[RunResult]:
        async with pool.session() as sb:
            return [await sb.run("x = 20"), await sb.run("x + 22"), await sb.run("None")]

    first, second, third = run(scenario())
    assert first.stdout == "" and first.error is None
    assert second.stdout == "42\n"
    assert third.stdout == ""


def test_exception_reported_with_snippet_traceback(pool: SandboxPool, run: Runner) -> None:
    result = run(_in_session(pool, "def f(d):\n    return 1 / d\n\nf(0)"))
    assert result.error is not None
    assert result.error.type == "ZeroDivisionError"
    assert result.error.message == "division by zero"
    assert 'File "<snippet>", line 4' in result.error.traceback
    assert 'File "<snippet>", line 2, in f\n    return 1 / d' in result.error.traceback
    # The worker's own frames are trimmed away.
    assert "worker.py" not in result.error.traceback
    assert "ZeroDivisionError" in result.render()


def test_library_errors_show_the_snippets_line_not_the_librarys_internals(
    pool: SandboxPool, run: Runner
) -> None:
    """A KeyError from pandas was a kilobyte of pandas frames and a chained exception; the
    model saw no line of its own code and sent the same code again."""

    async def go() -> tuple[RunResult, RunResult]:
        async with pool.session() as session:
            await session.run("import pandas as pd\ndef col(df, name):\n    return df[name]")
            return (
                await session.run("df = pd.DataFrame({'a': [1]})\nx = 1\ndf['Goals'].sum()"),
                await session.run("col(df, 'b')"),
            )

    first, second = run(go())
    assert first.error is not None and first.error.type == "KeyError"
    text = first.error.traceback
    assert "File \"<snippet>\", line 3, in <module>\n    df['Goals'].sum()" in text
    assert "(raised inside pandas/" in text and text.rstrip().endswith("KeyError: 'Goals'")
    assert "site-packages" not in text and "direct cause" not in text and len(text) < 400
    # A function from an earlier snippet: its frame, without a line from the wrong source.
    assert second.error is not None
    assert "line 3, in col\n" in second.error.traceback
    assert "col(df, 'b')" in second.error.traceback


def test_syntax_error_reported(pool: SandboxPool, run: Runner) -> None:
    result = run(_in_session(pool, "def broken(:\n    pass"))
    assert result.error is not None and result.error.type == "SyntaxError"


def test_stderr_and_subprocess_output_captured(pool: SandboxPool, run: Runner) -> None:
    code = (
        "import sys, subprocess\n"
        "print('py-out')\n"
        "print('py-err', file=sys.stderr)\n"
        "sys.stdout.buffer.write(b'raw-bytes\\n')\n"
        "_ = subprocess.run(['echo', 'child-out'])\n"
    )
    result = run(_in_session(pool, code))
    assert result.error is None, result.render()
    assert result.stdout == "py-out\nraw-bytes\nchild-out\n"
    assert result.stderr == "py-err\n"


def test_written_file_can_be_collected(pool: SandboxPool, run: Runner) -> None:
    async def scenario() -> tuple[RunResult, list[str], bytes]:
        async with pool.session({"in.csv": "a\n1\n2\n"}) as sb:
            result = await sb.run(
                "import pandas as pd\n"
                "pd.read_csv('in.csv').assign(b=lambda d: d.a * 2).to_excel('out.xlsx', "
                "index=False)"
            )
            return result, sb.files(), sb.read_bytes("out.xlsx")

    result, names, data = run(scenario())
    assert result.error is None, result.render()
    assert names == ["in.csv", "out.xlsx"]
    assert data[:2] == b"PK"  # an xlsx is a zip


def test_symlink_planted_by_snippet_is_not_followed(pool: SandboxPool, run: Runner) -> None:
    async def scenario() -> None:
        async with pool.session() as sb:
            result = await sb.run("import os; os.symlink('/etc/shadow', 'leak.txt')")
            assert result.error is None, result.render()
            assert "leak.txt" not in sb.files()
            with pytest.raises(SandboxError, match="symlink"):
                sb.read_bytes("leak.txt")
            with pytest.raises(SandboxError, match="relative"):
                sb.read_bytes("../worker.py")

    run(scenario())


def test_bad_task_file_path_is_a_clear_error(pool: SandboxPool, run: Runner) -> None:
    with pytest.raises(SandboxError, match="relative"):
        run(_in_session(pool, "pass", files={"../escape.txt": "x"}))
    with pytest.raises(SandboxError, match="not found"):
        run(_in_session(pool, "pass", files=Path("/nonexistent/t2s")))
    _assert_pool_works(pool, run)


# --- escapes ------------------------------------------------------------------------------------


def test_infinite_loop_hits_cpu_limit(pool: SandboxPool, run: Runner) -> None:
    result = run(_in_session(pool, "while True:\n    pass", cpu_s=1, wall_s=20))
    assert result.cpu_exceeded and not result.killed
    assert result.error is not None and result.error.type == "CPUTimeExceeded"
    _assert_pool_works(pool, run)


def test_sleep_hits_wall_limit_without_restart(pool: SandboxPool, run: Runner) -> None:
    result = run(_in_session(pool, "import time\ntime.sleep(60)", wall_s=1))
    assert result.timed_out and not result.killed
    assert result.error is not None and result.error.type == "TimeoutError"
    _assert_pool_works(pool, run)


def test_unresponsive_worker_is_killed_and_replaced(pool: SandboxPool, run: Runner) -> None:
    async def scenario() -> tuple[RunResult, RunResult, RunResult, int]:
        async with pool.session({"keep.txt": "kept"}) as sb:
            await sb.run("x = 1")
            # Ignores the in-worker alarm, so only the parent's deadline can stop it.
            hang = await sb.run(
                "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                "time.sleep(60)",
                wall_s=1,
            )
            after = await sb.run("print(open('keep.txt').read())")
            lost = await sb.run("x")
            return hang, after, lost, sb.restarts

    hang, after, lost, restarts = run(scenario())
    assert hang.killed and hang.timed_out
    assert hang.error is not None and "restarted" in hang.error.message
    assert restarts == 1
    assert after.stdout == "kept\n"  # the task files survive the restart
    assert lost.error is not None and lost.error.type == "NameError"
    _assert_pool_works(pool, run)


def test_cancelled_call_does_not_desync_the_session(pool: SandboxPool, run: Runner) -> None:
    async def scenario() -> tuple[RunResult, int]:
        async with pool.session({"keep.txt": "kept"}) as sb:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(sb.run("import time\ntime.sleep(30)", wall_s=20), 0.5)
            # The reply of the cancelled snippet must not be taken for this one's.
            return await sb.run("print(open('keep.txt').read())"), sb.restarts

    after, restarts = run(scenario())
    assert after.error is None and after.stdout == "kept\n"
    assert restarts == 1
    _assert_pool_works(pool, run)


def test_worker_exit_is_recovered(pool: SandboxPool, run: Runner) -> None:
    async def scenario() -> tuple[RunResult, RunResult, RunResult]:
        async with pool.session() as sb:
            return (
                await sb.run("import os\nos._exit(3)"),
                await sb.run("raise SystemExit(5)"),
                await sb.run("print('alive')"),
            )

    died, exited, alive = run(scenario())
    assert died.killed and died.error is not None and died.error.type == "SandboxCrash"
    assert not exited.killed and exited.error is not None and exited.error.type == "SystemExit"
    assert alive.stdout == "alive\n"
    _assert_pool_works(pool, run)


@needs("unprivileged_user")
def test_fork_bomb_is_contained(pool: SandboxPool, run: Runner) -> None:
    python_bomb = run(_in_session(pool, "import os\nwhile True:\n    os.fork()", wall_s=10))
    assert python_bomb.error is not None
    assert python_bomb.error.type == "BlockingIOError", python_bomb.render()
    assert python_bomb.killed_processes > 0
    shell_bomb = run(
        _in_session(pool, "import os\nos.system('f(){ f | f & }; f')\nimport time\ntime.sleep(1)")
    )
    assert not shell_bomb.killed
    # Either the process limit stopped it or the leftovers were killed after the snippet.
    assert "fork" in shell_bomb.stderr.lower() or shell_bomb.killed_processes > 0
    _assert_pool_works(pool, run)


def test_memory_hog_gets_memory_error(pool: SandboxPool, run: Runner) -> None:
    big = run(_in_session(pool, "x = bytearray(8 * 1024**3)", memory_mb=256))
    assert big.memory_error and big.error is not None and big.error.type == "MemoryError"
    growing = run(
        _in_session(
            pool, "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))", memory_mb=256
        )
    )
    assert growing.memory_error, growing.render()
    _assert_pool_works(pool, run)


def test_output_flood_is_truncated(pool: SandboxPool, run: Runner) -> None:
    printed = run(_in_session(pool, "while True:\n    print('x' * 1000)", cpu_s=1))
    # Whichever limit comes first (CPU, or wall time on a busy machine) ends it.
    assert printed.stdout_truncated and (printed.cpu_exceeded or printed.timed_out)
    assert len(printed.stdout) < 2000 + 200
    assert "[output truncated:" in printed.stdout
    child = run(
        _in_session(pool, "import os\n_ = os.system('head -c 5000000 /dev/zero | tr \"\\\\0\" y')")
    )
    assert child.stdout_truncated
    assert child.stdout.startswith("y" * 2000)
    assert "[output truncated: 4998000 more bytes" in child.stdout
    _assert_pool_works(pool, run)


@needs("unprivileged_user")
def test_cannot_read_outside_its_dir(pool: SandboxPool, run: Runner) -> None:
    code = (
        "import os\n"
        f"targets = ['/etc/shadow', '/root', '/proc/{os.getpid()}/environ']\n"
        "for t in targets:\n"
        "    try:\n"
        "        os.listdir(t) if t == '/root' else open(t, 'rb').read()\n"
        "        print(t, 'READ')\n"
        "    except OSError as e:\n"
        "        print(t, type(e).__name__)\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        "print([os.listdir(d) for d in ('/tmp', '/dev/shm') if os.path.isdir(d)])\n"
    )
    result = run(_in_session(pool, code))
    assert result.error is None, result.render()
    lines = result.stdout.splitlines()
    assert lines[0] == "/etc/shadow PermissionError"
    assert lines[1] == "/root PermissionError"
    if FULL.pid_namespace:
        # Its own PID namespace: only the worker itself (PID 1) is visible.
        assert lines[2] == f"/proc/{os.getpid()}/environ FileNotFoundError"
        assert lines[3] == "[1]"
    else:
        assert lines[2] == f"/proc/{os.getpid()}/environ PermissionError"
    if FULL.private_tmp:
        # /tmp and /dev/shm are private empty tmpfs mounts, except the path down to its own
        # worker dir in the one that holds the pool's base dir.
        assert sum(len(names) for names in eval(lines[4])) == 1


@needs("unprivileged_user")
def test_planted_secret_not_visible(pool: SandboxPool, run: Runner) -> None:
    code = (
        "import os, glob\n"
        f"print({SECRET_NAME!r} in os.environ)\n"
        "blob = b''\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        blob += open(path, 'rb').read()\n"
        "    except OSError:\n"
        "        pass\n"
        f"print({SECRET_VALUE!r}.encode() in blob)\n"
        "print(sorted(os.environ))\n"
    )
    result = run(_in_session(pool, code))
    assert result.error is None, result.render()
    lines = result.stdout.splitlines()
    assert lines[:2] == ["False", "False"]
    assert SECRET_VALUE not in result.stdout
    assert "OPENBLAS_NUM_THREADS" in lines[2]


@needs("network_namespace")
def test_socket_has_no_network(pool: SandboxPool, run: Runner) -> None:
    code = (
        "import socket\n"
        "s = socket.socket()\n"
        "s.settimeout(2)\n"
        "try:\n"
        "    s.connect(('1.1.1.1', 80))\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
    )
    result = run(_in_session(pool, code))
    assert result.error is None, result.render()
    assert result.stdout.strip() == str(errno.ENETUNREACH)


@needs("unprivileged_user", "private_tmp")
def test_cannot_write_outside_its_dir(pool: SandboxPool, run: Runner) -> None:
    outside = Path(tempfile.gettempdir()) / "t2s-sandbox-escape-probe"
    code = (
        "import os\n"
        f"targets = ['/tmp/x', '/var/tmp/x', '/dev/shm/x', '/root/x', '/etc/x', {str(outside)!r},"
        f" {str(Path.cwd() / 't2s-escape')!r}, '../x', '/run/lock/x']\n"
        "for t in targets:\n"
        "    try:\n"
        "        open(t, 'w').write('x')\n"
        "        print(t, 'WROTE')\n"
        "    except OSError as e:\n"
        "        print(t, type(e).__name__)\n"
        "open('inside.txt', 'w').write('ok')\n"
        "print(open('inside.txt').read())\n"
    )
    try:
        result = run(_in_session(pool, code))
        assert result.error is None, result.render()
        assert "WROTE" not in result.stdout, result.stdout
        assert result.stdout.splitlines()[-1] == "ok"
        assert not outside.exists()
    finally:
        if outside.exists():
            outside.unlink()


def test_leftover_background_processes_killed(pool: SandboxPool, run: Runner) -> None:
    async def scenario() -> tuple[RunResult, RunResult]:
        async with pool.session() as sb:
            spawn = await sb.run(
                "import subprocess, os\n"
                "subprocess.Popen(['sleep', '1000'])\n"
                "os.system('(sleep 1000 &) ; setsid sleep 1000 &')\n"
            )
            after = await sb.run(
                "import os\n"
                "pids = [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]\n"
                "names = [open(f'/proc/{p}/comm').read().strip() for p in pids]\n"
                "print([n for n in names if n == 'sleep'])\n"
            )
            return spawn, after

    spawn, after = run(scenario())
    assert spawn.error is None, spawn.render()
    assert spawn.killed_processes >= 3
    assert after.stdout == "[]\n"


def test_state_isolated_between_sessions(pool: SandboxPool, run: Runner) -> None:
    async def scenario() -> tuple[RunResult, RunResult, RunResult]:
        async with pool.session({"mine.txt": "task-one"}) as first:
            setup = await first.run(
                "import os, json\nsecret_var = 'one'\nos.environ['LEAK'] = '1'\n"
                "open('written.txt', 'w').write('one')\nprint(os.getcwd())"
            )
        first_dir = setup.stdout.strip()
        # Two sessions at once (one on each worker), both after the first one ended.
        async with pool.session() as a, pool.session({"other.txt": "b"}) as b:

            def probe(other: Path) -> str:
                return (
                    "import os\n"
                    "print('secret_var' in globals(), 'LEAK' in os.environ)\n"
                    f"print(os.path.exists({first_dir!r}), sorted(os.listdir('.')))\n"
                    f"print(os.path.exists({str(other)!r}))\n"
                )

            await asyncio.gather(a.ready(), b.ready())  # their paths exist once ready
            results = await asyncio.gather(a.run(probe(b.path)), b.run(probe(a.path)))
        return setup, results[0], results[1]

    setup, in_a, in_b = run(scenario())
    assert setup.error is None, setup.render()
    assert in_a.error is None and in_b.error is None, in_a.render() + in_b.render()
    assert in_a.stdout.splitlines()[:2] == ["False False", "False []"]
    assert in_b.stdout.splitlines()[:2] == ["False False", "False ['other.txt']"]
    if FULL.full:
        # Each worker sees only its own dir: the other session's path does not exist for it.
        assert in_a.stdout.splitlines()[2] == "False"
        assert in_b.stdout.splitlines()[2] == "False"


def test_shared_interpreter_state_reset_between_sessions(pool: SandboxPool, run: Runner) -> None:
    async def scenario() -> RunResult:
        # Same pool, both workers: change shared state in two sessions, then look in two more.
        changes = (
            "import pandas as pd, builtins, os, sys, warnings\n"
            "warnings.simplefilter('error')\n"
            "pd.set_option('display.max_rows', 3)\n"
            "builtins.injected = 1\n"
            "sys.path.insert(0, '/nowhere')\n"
            "os.chdir('/')\n"
        )
        await asyncio.gather(_in_session(pool, changes), _in_session(pool, changes))
        look = (
            "import pandas as pd, builtins, os, sys, warnings\n"
            "print(pd.get_option('display.max_rows'), hasattr(builtins, 'injected'),"
            " '/nowhere' in sys.path, os.getcwd() == os.environ['HOME'],"
            " warnings.filters[0][0] == 'error')"
        )
        results = await asyncio.gather(_in_session(pool, look), _in_session(pool, look))
        assert results[0].stdout == results[1].stdout
        return results[0]

    result = run(scenario())
    assert result.error is None, result.render()
    assert result.stdout == "60 False False True False\n"


def test_dirty_worker_is_replaced(pool: SandboxPool, run: Runner) -> None:
    async def scenario() -> RunResult:
        async with pool.session() as sb:
            return await sb.run(
                "import threading, time\n"
                "threading.Thread(target=lambda: time.sleep(3600), daemon=True).start()"
            )

    result = run(scenario())
    assert result.error is None
    _assert_pool_works(pool, run)


# --- configuration, degraded mode, sync API ------------------------------------------------------


def test_protections_report() -> None:
    report = check_protections()
    assert report.python
    text = report.render()
    assert "network_namespace:" in text
    if os.geteuid() != 0:
        assert not report.full and any("not running as root" in m for m in report.missing)


def test_run_python_sync_convenience() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxDegradedWarning)
        result = run_python("print(open('n.txt').read().upper())", files={"n.txt": "hi"})
    assert result.stdout == "HI\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to show the privilege drop is skipped")
def test_degraded_mode_warns_and_still_runs(tmp_path: Path) -> None:
    python = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    if python is None:
        pytest.skip("no system python3")
    # An interpreter the sandbox user cannot run (like one under /root): a root-only wrapper.
    wrapper = tmp_path / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec {python} "$@"\n')
    wrapper.chmod(0o700)
    config = SandboxConfig(python=str(wrapper), preload=())

    async def scenario() -> tuple[RunResult, list[str]]:
        async with SandboxPool(size=1, config=config) as pool, pool.session() as sb:
            return await sb.run("import os\nprint(os.getuid())"), pool.protections.missing

    with pytest.warns(SandboxDegradedWarning, match="cannot run"):
        result, missing = asyncio.run(scenario())
    assert result.stdout == "0\n"  # ran, but as root: reported, not hidden
    assert any("cannot run" in m for m in missing)

    strict = config.model_copy(update={"require_isolation": True})
    with pytest.raises(SandboxError, match="isolation unavailable"):
        asyncio.run(SandboxPool(size=1, config=strict).start())


def test_session_misuse_is_a_clear_error(pool: SandboxPool, run: Runner) -> None:
    session: Session = pool.session()
    with pytest.raises(SandboxError, match="not open"):
        run(session.run("1"))
    with pytest.raises(SandboxError, match="not open"):
        session.path  # noqa: B018

    async def path_before_ready() -> list[str]:
        async with pool.session({"a.txt": "x"}) as fresh:
            listed = await fresh.list_files()  # known at once, set-up or not
            await fresh.ready()
            assert fresh.path.is_dir()
            return listed

    assert run(path_before_ready()) == ["a.txt"]
    with pytest.raises(SandboxError, match="at least 1"):
        SandboxPool(size=0)
    with pytest.raises(SandboxError, match="not started"):
        run(_in_session(SandboxPool(size=1), "1"))


def test_session_dirs_go_to_the_configured_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolkit.sandbox._pool import BASE_DIR_ENV, default_base_parent

    monkeypatch.setenv(BASE_DIR_ENV, str(tmp_path))
    assert default_base_parent() == tmp_path

    async def scenario() -> tuple[Path, RunResult]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SandboxDegradedWarning)
            pool = SandboxPool(size=1)
            async with pool, pool.session({"t.csv": "a\n1\n"}) as session:
                result = await session.run("print(open('t.csv').read().split())")
                return session.path, result

    path, result = asyncio.run(scenario())
    assert path.is_relative_to(tmp_path)
    assert result.stdout == "['a', '1']\n", result.render()
    assert not path.exists()  # the session removed its dir
    assert list(tmp_path.iterdir()) == []  # and the pool its base


def test_default_base_is_a_roomy_tmpfs_or_the_temp_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit.sandbox._pool import BASE_DIR_ENV, default_base_parent

    monkeypatch.delenv(BASE_DIR_ENV, raising=False)
    chosen = default_base_parent()
    if chosen is not None:
        assert chosen == Path("/dev/shm")
        stats = os.statvfs(chosen)
        assert stats.f_bavail * stats.f_frsize >= 1 << 30


def test_file_system_type_of_a_path() -> None:
    from toolkit.sandbox._pool import _fs_type

    assert _fs_type(Path("/proc/self")) == "proc"
    assert _fs_type(Path("/")) is not None


def test_a_killed_pools_dir_is_swept_by_the_next_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL skips close(): the next pool removes what a dead process left, nothing else."""
    from toolkit.sandbox._pool import BASE_DIR_ENV

    monkeypatch.setenv(BASE_DIR_ENV, str(tmp_path))
    killed = subprocess.run(
        [sys.executable, "-W", "ignore", "-c",
         "import asyncio, os, signal\n"
         "from toolkit.sandbox import SandboxPool\n"
         "async def go():\n"
         "    pool = SandboxPool(size=1)\n"
         "    await pool.start()\n"
         "    async with pool.session({'a.txt': 'x'}) as session:\n"
         "        await session.ready()\n"
         "        os.kill(os.getpid(), signal.SIGKILL)\n"
         "asyncio.run(go())\n"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (stale,) = tmp_path.iterdir()
    assert any(stale.rglob("a.txt"))  # the task dir is still there
    starting = tmp_path / "t2s-sandbox-starting"  # no owner file yet: left alone
    starting.mkdir()
    foreign = tmp_path / "other-tool"
    foreign.mkdir()

    async def scenario() -> list[Path]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SandboxDegradedWarning)
            async with SandboxPool(size=1) as pool:
                assert pool._base is not None and pool._base.exists()
                return sorted(tmp_path.iterdir())

    during = asyncio.run(scenario())
    assert stale not in during and starting in during and foreign in during
    assert sorted(tmp_path.iterdir()) == [foreign, starting]  # and the new pool cleaned up


def test_killing_a_worker_leaves_reaping_to_asyncio(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killing a worker must not reap it behind asyncio's back (Popen.kill() polls first):
    the reap then raced asyncio's watcher thread, which logged "Unknown child process pid N"
    and reported exit status 255. The watcher is slowed here so the race is always lost."""
    import threading
    import time

    from toolkit.sandbox._pool import _Worker

    real_waitpid = os.waitpid

    def slow_watcher_waitpid(pid: int, options: int) -> tuple[int, int]:
        if threading.current_thread().name.startswith("asyncio-waitpid"):
            time.sleep(0.3)
        return real_waitpid(pid, options)

    monkeypatch.setattr(os, "waitpid", slow_watcher_waitpid)

    async def main() -> int | None:
        proc = await asyncio.create_subprocess_exec("sleep", "30", start_new_session=True)
        # A worker that died on its own and is not reaped yet (a zombie): the case that raced.
        os.kill(proc.pid, signal.SIGKILL)
        while Path(f"/proc/{proc.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
            await asyncio.sleep(0.01)
        await _Worker(proc, tmp_path, {}).kill()
        return proc.returncode

    with caplog.at_level("WARNING", logger="asyncio"):
        code = asyncio.run(main())
    assert code == -signal.SIGKILL
    assert not tmp_path.exists()
    assert "Unknown child process" not in caplog.text


_AS_ORDINARY_USER = r"""
import json, os, warnings
from toolkit.sandbox import SandboxDegradedWarning, check_protections, run_python

report = check_protections()
code = (
    "import json, os, socket\n"
    "parent = os.getppid()\n"
    "try:\n"
    "    socket.create_connection(('1.1.1.1', 53), timeout=2); net = 'open'\n"
    "except OSError as exc:\n"
    "    net = type(exc).__name__\n"
    "print(json.dumps({'pids': [p for p in os.listdir('/proc') if p.isdigit()],\n"
    "                  'tmp': os.listdir('/tmp'), 'net': net}))\n"
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", SandboxDegradedWarning)
    result = run_python(code)
print(json.dumps({"report": report.model_dump(), "out": result.stdout, "error": str(result.error),
                  "toolkit_pid": os.getpid()}))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("unshare") is None,
    reason="needs root to become an ordinary user, and util-linux",
)
def test_an_ordinary_user_gets_namespaces_through_a_user_namespace() -> None:
    """Without root (a GitHub-hosted runner), workers ran with the toolkit's own view: the
    network, every process and so the toolkit's environ (its API keys). Where user namespaces
    are allowed, they now get no network, their own pids and a hidden /tmp."""
    probe_ns = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "unshare",
         "--user", "--map-root-user", "--net", "--pid", "--fork", "--mount-proc", "--", "true"],
        capture_output=True, check=False,
    )  # fmt: skip
    if probe_ns.returncode != 0:
        pytest.skip("user namespaces are not allowed for ordinary users here")
    home = tempfile.mkdtemp(prefix="t2s-user-")
    os.chown(home, 65534, 65534)
    env = {"PATH": os.environ["PATH"], "HOME": home, "TMPDIR": home,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # fmt: skip
    try:
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
             sys.executable, "-c", _AS_ORDINARY_USER],
            capture_output=True, text=True, env=env, cwd=home, timeout=120, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if done.returncode != 0 and "Permission denied" in done.stderr:
        pytest.skip(f"the ordinary user cannot run this interpreter: {done.stderr[-200:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    report = got["report"]
    assert not report["running_as_root"] and not report["unprivileged_user"]
    assert report["network_namespace"] and report["pid_namespace"]
    assert any("user namespace" in m for m in report["missing"])
    seen = json.loads(got["out"])
    assert str(got["toolkit_pid"]) not in seen["pids"] and len(seen["pids"]) <= 3, seen
    assert seen["net"] != "open"
    if report["private_tmp"]:
        assert seen["tmp"] == [], seen


def test_sessions_over_before_they_got_a_worker_let_the_pool_close() -> None:
    """An agentic analysis whose first reply was invalid left its session while the session
    still waited for a worker; with more such analyses than workers, the pool's close()
    waited forever (evolve hung after analyse with 17 tasks: a new user's report)."""

    async def scenario() -> list[str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SandboxDegradedWarning)
            async with SandboxPool(size=1) as pool:

                async def short() -> None:
                    async with pool.session({"a.txt": "x"}):
                        await asyncio.sleep(0)

                await asyncio.gather(*(short() for _ in range(5)))
        # The pool still works for a new one after all that.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SandboxDegradedWarning)
            async with SandboxPool(size=1) as again:
                return [
                    (
                        await _in_session(again, "print(open('a.txt').read())", {"a.txt": "ok"})
                    ).stdout
                ]

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == ["ok\n"]
