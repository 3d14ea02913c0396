"""Recalculate workbooks with LibreOffice headless, as SpreadsheetBench's pipeline does.

openpyxl writes formulas without cached values, and ``load_workbook(data_only=True)`` reads
those as None, so an agent's formula answers must be recalculated before scoring. Facts this
module relies on (verified on Debian 12, LibreOffice from ``libreoffice-calc-nogui``):

- ``soffice --headless --calc --convert-to xlsx --outdir OUT in.xlsx`` writes ``OUT/in.xlsx``
  with every formula's value cached; one call converts many files.
- Without ``OOXMLRecalcMode = 0`` in the profile, stale cached values are kept, so each
  profile gets a ``registrymodifications.xcu`` setting it before first use.
- soffice exits 0 even when a conversion fails, so success is "the output file exists".
- Two concurrent soffice processes must not share a profile: one profile per process and
  thread.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from toolkit.tasks.base import TaskError

INSTALL_HINT = (
    "install LibreOffice Calc (scripts/install_system_deps.sh, or "
    "apt-get install -y --no-install-recommends libreoffice-calc-nogui)"
)
DEFAULT_TIMEOUT_S = 180.0

_REGISTRY = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
 xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" \
oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" \
oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""

_profiles_lock = threading.Lock()
_profiles: dict[tuple[int, int], Path] = {}


class RecalcError(TaskError):
    """LibreOffice is missing or failed to recalculate a workbook."""


def soffice_path() -> str | None:
    """The ``soffice`` executable, or None when LibreOffice is not installed."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def write_profile(profile: Path) -> None:
    """Create a LibreOffice user profile that recalculates formulas on load."""
    user = profile / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(_REGISTRY, encoding="utf-8")


def _worker_profile() -> Path:
    """This process and thread's own profile (created on first use, removed at exit)."""
    key = (os.getpid(), threading.get_ident())
    with _profiles_lock:
        profile = _profiles.get(key)
        if profile is None:
            profile = Path(tempfile.mkdtemp(prefix="trace2skill-soffice-"))
            write_profile(profile)
            _profiles[key] = profile
        return profile


@atexit.register
def _remove_profiles() -> None:
    for key, profile in list(_profiles.items()):
        if key[0] == os.getpid():
            shutil.rmtree(profile, ignore_errors=True)


def recalculate(
    paths: Sequence[Path],
    out_dir: Path,
    *,
    profile: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[Path]:
    """Recalculate ``paths`` with one soffice call; write the results into ``out_dir``.

    Inputs are staged under unique names, so files with the same name do not collide and
    an input is never overwritten.

    Returns:
        The recalculated workbook of each input, in input order (``out_dir/<i>.xlsx``).

    Raises:
        RecalcError: soffice is missing, timed out, or produced no output for an input.
    """
    exe = soffice_path()
    if exe is None:
        raise RecalcError(f"LibreOffice (soffice) is not installed: {INSTALL_HINT}")
    if not paths:
        return []
    profile = profile or _worker_profile()
    if not (profile / "user" / "registrymodifications.xcu").is_file():
        write_profile(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trace2skill-recalc-") as staging:
        staged = []
        for i, path in enumerate(paths):
            if not Path(path).is_file():
                raise RecalcError(f"workbook to recalculate does not exist: {path}")
            target = Path(staging) / f"{i}{Path(path).suffix.lower() or '.xlsx'}"
            shutil.copyfile(path, target)
            staged.append(target)
        outputs = [out_dir / f"{i}.xlsx" for i in range(len(paths))]
        for out in outputs:
            out.unlink(missing_ok=True)
        cmd = [
            exe,
            f"-env:UserInstallation={profile.resolve().as_uri()}",
            "--headless",
            "--calc",
            "--convert-to",
            "xlsx",
            "--outdir",
            str(out_dir),
            *map(str, staged),
        ]
        _run(cmd, timeout_s)
    missing = [str(p) for p, out in zip(paths, outputs, strict=True) if not out.is_file()]
    if missing:
        raise RecalcError(
            "LibreOffice could not open or convert: "
            + ", ".join(missing[:5])
            + (" ..." if len(missing) > 5 else "")
        )
    return outputs


def _run(cmd: list[str], timeout_s: float) -> None:
    """Run soffice in its own process group; kill the whole group on timeout."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RecalcError(f"LibreOffice timed out after {timeout_s:.0f} s") from None
