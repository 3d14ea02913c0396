"""How a sandbox worker is started: interpreter choice, protection probes, command, rlimits.

The confinement recipe (verified on the target machines; DESIGN.md section 6): create the
namespaces as root, then drop privileges::

    unshare --net --pid --fork --kill-child --mount-proc -- \\
        sh -c <hide world-writable dirs> sh <worker-dir> \\
        setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs -- \\
        <python> -I worker.py <worker-dir> <preload>

with rlimits set in ``preexec_fn`` (hard caps the unprivileged worker cannot raise) and a
scrubbed environment. Without root, ``unshare --user --map-root-user`` makes the same
namespaces where the kernel allows user namespaces (the worker keeps the user's uid). Each
layer is probed once; a missing one is left out and reported.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit.sandbox._models import DEFAULT_SANDBOX_VENV, Protections, SandboxConfig

SETUP_HINT = "run `sudo bash scripts/install_system_deps.sh` to build the sandbox interpreter"

# Runs as root inside the new mount namespace, before privileges are dropped. It hides the
# world-writable directories behind empty read-only tmpfs mounts, then re-exposes the worker's
# own directory (opened as fd 9 before it was hidden) at the same path, writable.
# `remount` only ever touches mounts made here, in this namespace; the host is unaffected. It
# is a bind remount (the mount point's flags): in a user namespace, the only kind allowed.
MOUNT_SCRIPT = r"""
set -e
W="$1"; shift
mount --make-rprivate /
exec 9<"$W"
hidden=""
for d in /tmp /var/tmp /dev/shm /run/lock /dev/mqueue; do
    if [ -d "$d" ] && [ ! -L "$d" ]; then
        mount -t tmpfs -o size=64k,mode=755,nosuid,nodev t2s-hidden "$d"
        hidden="$hidden $d"
    fi
done
mkdir -p "$W"
mount --no-canonicalize --bind /proc/self/fd/9 "$W"
exec 9<&-
for d in $hidden; do
    mount -o remount,bind,ro,nosuid,nodev "$d"
done
exec "$@"
"""


def resolve_python(config: SandboxConfig) -> str:
    """The workers' interpreter: config, $TRACE2SKILL_SANDBOX_PYTHON, the built venv, or ours."""
    if config.python:
        return config.python
    env = os.environ.get("TRACE2SKILL_SANDBOX_PYTHON")
    if env:
        return env
    venv_python = DEFAULT_SANDBOX_VENV / "bin" / "python"
    if venv_python.exists():
        return str(venv_python)
    return sys.executable


def minimal_env(home: str) -> dict[str, str]:
    """The only environment a worker gets: no secrets, single-threaded numerics."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@dataclass(frozen=True)
class LaunchPlan:
    """Which layers wrap the worker (decided once per pool from the probes)."""

    python: str
    unshare: str | None
    setpriv: str | None
    private_tmp: bool
    uid: int
    user_namespace: bool = False

    def command(self, worker_script: str, worker_dir: str, preload: tuple[str, ...]) -> list[str]:
        """The argv that starts one worker."""
        cmd = [self.python, "-I", worker_script, worker_dir, ",".join(preload)]
        if self.setpriv:
            cmd = [
                self.setpriv,
                f"--reuid={self.uid}",
                f"--regid={self.uid}",
                "--clear-groups",
                "--no-new-privs",
                "--",
                *cmd,
            ]
        if self.unshare and self.private_tmp:
            cmd = ["/bin/sh", "-c", MOUNT_SCRIPT, "sh", worker_dir, *cmd]
        if self.unshare:
            # Without root, a user namespace (the worker is its root, mapped to our uid) is
            # what lets an ordinary user make the other namespaces.
            userns = ["--user", "--map-root-user"] if self.user_namespace else []
            cmd = [
                self.unshare,
                *userns,
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "--",
                *cmd,
            ]
        return cmd


def count_user_tasks(uid: int) -> int:
    """Processes plus threads owned by ``uid`` now (they all count against RLIMIT_NPROC)."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue
        uid_ok = threads = False
        count = 1
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                uid_ok = int(line.split()[1]) == uid
            elif line.startswith(b"Threads:"):
                count = int(line.split()[1])
                threads = True
            if uid_ok and threads:
                break
        if uid_ok:
            total += count
    return total


def make_preexec(config: SandboxConfig, nproc: int | None) -> Callable[[], None]:
    """rlimits for the worker, set as hard caps (the unprivileged worker can only lower them).

    RLIMIT_NPROC counts every task of the uid, shared by all concurrent workers, and is what
    stops a fork bomb (it does not bind root, hence the privilege drop). RLIMIT_CPU stays
    unlimited here: it is cumulative per process, so the worker moves the soft limit per snippet.
    """
    memory = config.worker_memory_mb * 1024 * 1024
    fsize = config.file_size_mb * 1024 * 1024
    nofile = config.open_files

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return preexec


def _probe(cmd: list[str], cwd: str | None = None) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            timeout=30,
            env=minimal_env(cwd or "/"),
            cwd=cwd,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    err = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return done.returncode == 0, (err[-1] if err else f"exit status {done.returncode}")


def _probe_private_tmp(ns: list[str], python: str) -> tuple[bool, str]:
    """Whether the mount script hides the world-writable dirs under the namespaces ``ns``."""
    with tempfile.TemporaryDirectory(prefix="t2s-probe-") as tmp:
        # Both the worker's dir and the interpreter must stay reachable once the
        # world-writable dirs are hidden (an interpreter under /tmp would not be).
        Path(tmp, "marker").touch()
        check = "import os, sys; sys.exit(not os.path.exists(sys.argv[1]))"
        return _probe(
            [*ns, "/bin/sh", "-c", MOUNT_SCRIPT, "sh", tmp]
            + [python, "-I", "-c", check, f"{tmp}/marker"]
        )


@functools.lru_cache(maxsize=8)
def probe(python: str, uid: int) -> tuple[LaunchPlan, Protections]:
    """Find the strongest launch plan available here (cached per interpreter and uid)."""
    missing: list[str] = []
    root = os.geteuid() == 0
    unshare = shutil.which("unshare")
    setpriv = shutil.which("setpriv")
    use_setpriv: str | None = None
    use_unshare: str | None = None
    private_tmp = False
    if not Path(python).exists():
        missing.append(f"interpreter {python} does not exist; {SETUP_HINT}")
    if not root:
        # An ordinary user (a GitHub-hosted runner, a laptop) may still make namespaces inside
        # a user namespace: no network, only its own processes (the parent's environ, where
        # API keys live, is out of sight), /tmp hidden. Dropping to another uid needs root.
        ns = [unshare, "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"]
        ok, why = _probe([*ns, "--mount-proc", "--", "true"]) if unshare else (False, "")
        if ok:
            use_unshare = unshare
            private_tmp, why = _probe_private_tmp([*ns, "--mount-proc", "--"], python)
            if not private_tmp:
                missing.append(f"cannot hide /tmp in a mount namespace ({why})")
            missing.append(
                "not running as root: workers run as your own user in a user namespace (no "
                "network, own processes), so your files are readable and no process limit "
                "applies; run as root for the full sandbox"
            )
        else:
            missing.append(
                "not running as root and no user namespace"
                + (f" ({why})" if why else " (unshare not found)")
                + ": no network isolation, no process limits, the parent's files and environ "
                "are readable; run as root for the full sandbox"
            )
    else:
        if setpriv is None:
            missing.append("setpriv not found (install util-linux): workers run as root")
        else:
            ok, why = _probe(
                [
                    setpriv,
                    f"--reuid={uid}",
                    f"--regid={uid}",
                    "--clear-groups",
                    "--no-new-privs",
                    "--",
                    python,
                    "-I",
                    "-c",
                    "pass",
                ],
                cwd="/",
            )
            if ok:
                use_setpriv = setpriv
            else:
                missing.append(
                    f"uid {uid} cannot run {python} ({why}): workers run as root; {SETUP_HINT}"
                )
        if unshare is None:
            missing.append("unshare not found (install util-linux): no network/pid namespace")
        else:
            ns = [unshare, "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--"]
            ok, why = _probe([*ns, "true"])
            if ok:
                use_unshare = unshare
                private_tmp, why = _probe_private_tmp(ns, python)
                if not private_tmp:
                    missing.append(f"cannot hide /tmp in a mount namespace ({why})")
            else:
                missing.append(f"unshare failed ({why}): no network/pid namespace")
    plan = LaunchPlan(
        python=python,
        unshare=use_unshare,
        setpriv=use_setpriv,
        private_tmp=private_tmp,
        uid=uid,
        user_namespace=use_unshare is not None and not root,
    )
    protections = Protections(
        python=python,
        running_as_root=root,
        unprivileged_user=use_setpriv is not None,
        network_namespace=use_unshare is not None,
        pid_namespace=use_unshare is not None,
        private_tmp=private_tmp,
        missing=missing,
    )
    return plan, protections
