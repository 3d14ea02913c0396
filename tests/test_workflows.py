"""The GitHub Actions workflows: valid against GitHub's workflow schema, clean under zizmor's
security audits, least privilege, and actions pinned to the release commits we checked."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))

#: The release commits the workflows may use (read from each action's own repository).
PINS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    "actions/cache": ("27d5ce7f107fe9357f9df03efb73ab90386fccae", "v5.0.5"),
}


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _zizmor() -> str:
    """The zizmor binary installed with the pinned wheel (in whichever venv holds it)."""
    try:
        files = distribution("zizmor").files or []
    except PackageNotFoundError:
        pytest.fail("zizmor is not installed: pip install -r requirements.lock")
    for file in files:
        if file.name == "zizmor":
            return str(distribution("zizmor").locate_file(file).resolve())
    pytest.fail("the zizmor wheel has no zizmor binary")


def test_both_workflows_exist():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "evolve-skill.yml"}


def test_workflows_match_githubs_schema():
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
        + [str(p) for p in WORKFLOWS],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok -- validation done" in proc.stdout


def test_workflows_pass_zizmor_offline_with_the_strictest_persona():
    proc = subprocess.run(
        [_zizmor(), "--offline", "--persona=auditor", "--no-progress", str(WORKFLOWS[0].parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout


def test_zizmor_catches_an_injection(tmp_path):
    """The linter really audits: a workflow that splices an input into a script fails."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        """name: bad
on:
  workflow_dispatch:
    inputs:
      skill: {type: string}
permissions: {}
jobs:
  bad:
    name: bad
    runs-on: ubuntu-latest
    steps:
      - run: echo ${{ inputs.skill }}
"""
    )
    proc = subprocess.run(
        [_zizmor(), "--offline", "--no-progress", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "template-injection" in proc.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_checked_release_commits(path):
    uses = re.findall(r"uses:\s*(\S+)(.*)", path.read_text())
    assert uses
    for ref, comment in uses:
        action, _, sha = ref.partition("@")
        assert action in PINS, f"{action} is not one of the checked actions"
        assert (sha, comment.strip()) == (PINS[action][0], f"# {PINS[action][1]}")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_is_spliced_into_a_script(path):
    for job in _load(path)["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step


def test_ci_runs_make_test_on_push_and_pull_request():
    ci = _load(ROOT / ".github" / "workflows" / "ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    assert ci["permissions"] == {"contents": "read"}
    runs = [s.get("run") for s in ci["jobs"]["test"]["steps"]]
    assert "make test" in runs


def test_evolve_workflow_least_privilege_and_inputs():
    wf = _load(ROOT / ".github" / "workflows" / "evolve-skill.yml")
    assert set(wf["on"]["workflow_dispatch"]["inputs"]) == {
        "skill",
        "suite",
        "model",
        "mode",
        "error_analyst",
        "evolve_limit",
        "test_limit",
    }
    # The job's choices are the CLI's (fake/rehearsal needs the single analyst to finish).
    from toolkit.cli.evolve import evolve as evolve_cmd

    choices = next(p for p in evolve_cmd.params if p.name == "error_analyst").type.choices  # type: ignore[attr-defined]
    assert wf["on"]["workflow_dispatch"]["inputs"]["error_analyst"]["options"] == list(choices)
    assert wf["on"]["schedule"]
    assert wf["permissions"] == {}
    (job,) = wf["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "inputs.skill" in wf["concurrency"]["group"]
    steps = job["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
    scripts = "\n".join(s.get("run", "") for s in steps)
    assert '.venv/bin/trace2skill evolve "${args[@]}"' in scripts
    assert '--error-analyst "$ERROR_ANALYST"' in scripts
    assert '.venv/bin/trace2skill pr "runs/$RUN_ID"' in scripts
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "runs/${{ env.RUN_ID }}"
    pr_step = next(s for s in steps if "trace2skill pr" in s.get("run", ""))
    assert pr_step["env"]["GH_TOKEN"] == "${{ secrets.TRACE2SKILL_PR_TOKEN || github.token }}"


def _step_script(name: str) -> str:
    wf = _load(ROOT / ".github" / "workflows" / "evolve-skill.yml")
    (job,) = wf["jobs"].values()
    return next(s["run"] for s in job["steps"] if s.get("name") == name)


def _run_step(tmp_path: Path, script: str, status: int) -> tuple[int, str, str]:
    """Run a step's script as the runner does (bash -eo pipefail) with a trace2skill that
    exits ``status``; returns the step's exit status, its output and what it put in GITHUB_ENV."""
    fake = tmp_path / ".venv" / "bin" / "trace2skill"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(f"#!/bin/sh\nexit {status}\n")
    fake.chmod(0o755)
    env_file = tmp_path / "github_env"
    env_file.write_text("RUN_ID=evolve-1-1\n")
    env = {"PATH": "/usr/bin:/bin", "GITHUB_ENV": str(env_file), "GITHUB_RUN_ID": "1",
           "GITHUB_RUN_ATTEMPT": "1", "SKILL": "skills/x", "SUITE": "wikitq", "MODE": "error",
           "EVOLVE_LIMIT": "2", "TEST_LIMIT": "2", "MODEL": "fake/m", "RUN_ID": "evolve-1-1",
           "BASE": "main"}  # fmt: skip
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr, env_file.read_text()


@pytest.mark.parametrize(
    ("status", "job_status", "done", "notice"),
    [
        (0, 0, True, None),
        (1, 1, False, None),
        (3, 0, False, "budget spent"),
        (5, 0, False, "the run learned nothing"),  # was red: only errors fail the job
    ],
)
def test_evolve_step_outcomes(tmp_path, status, job_status, done, notice):
    code, out, env = _run_step(tmp_path, _step_script("Evolve"), status)
    assert code == job_status, out
    # The PR step runs only after a finished run (an error wrote EVOLVE_DONE=true once).
    assert ("EVOLVE_DONE=true" in env) is done
    assert (f"::notice::{notice}" in out) if notice else "::notice::" not in out


@pytest.mark.parametrize(("status", "job_status"), [(0, 0), (1, 1), (4, 0)])
def test_pr_step_outcomes(tmp_path, status, job_status):
    code, out, _ = _run_step(tmp_path, _step_script("Open or update the pull request"), status)
    assert code == job_status, out
    assert ("::notice::the run's evidence did not pass the PR gate" in out) is (status == 4)


def test_evolve_workflow_upload_and_default_skill():
    wf = _load(ROOT / ".github" / "workflows" / "evolve-skill.yml")
    (job,) = wf["jobs"].values()
    upload = next(
        s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")
    )
    # evolve can fail before it makes the run folder: its error is the failure, not this step.
    assert upload["with"]["if-no-files-found"] == "warn"
    # An empty skill is the suite's bundled skill, in the job and its concurrency group alike.
    skill = job["env"]["SKILL"]
    assert skill in wf["concurrency"]["group"]
    assert wf["on"]["workflow_dispatch"]["inputs"]["skill"]["default"] == ""
    for suite in wf["on"]["workflow_dispatch"]["inputs"]["suite"]["options"]:
        bundled = re.search(rf"inputs.suite == '{suite}' && '([^']+)'", skill)
        path = bundled.group(1) if bundled else skill.rsplit("'", 2)[-2]
        assert (ROOT / path / "SKILL.md").is_file(), suite
        assert suite in path  # the suite's own skill
