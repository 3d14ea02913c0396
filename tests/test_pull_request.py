"""``trace2skill pr``: the review and body of a real run, the gate, pushing to a bare repository
and opening or updating the PR through the fake API."""

from __future__ import annotations

import base64
import os
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fake_github import FakeGitHub, serve
from tests.repo_helpers import git
from tests.run_fixture import RUN, SKILL_PATH, build_run
from tests.user_run import TASKS, rehearsal_options, rehearsed_jsonl_run
from toolkit.cli import main
from toolkit.github import TOKEN_VARIABLES, GitHubClient, GitHubError
from toolkit.pull_request import GateRefused, _auth_env, plan_pull_request, publish
from toolkit.repo import SkillRepo, export_bundle
from toolkit.review import MAX_ROWS, check_gate, load_review, render_body

TOKEN = "ghp_secretTOKEN1234567890"


@pytest.fixture(scope="module")
def evolved(tmp_path_factory):
    """A run with every file (module-scoped: read-only tests share it)."""
    return build_run(tmp_path_factory.mktemp("evolved"))


@pytest.fixture
def api():
    state = FakeGitHub()
    server, url = serve(state)
    yield state, url
    server.shutdown()
    server.server_close()


def _with_remote(tmp_path: Path, **kwargs) -> tuple[Path, Path, Path]:
    root, run_dir = build_run(tmp_path, **kwargs)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(root, "remote", "add", "origin", str(remote))
    git(root, "push", "-q", "origin", "main")
    return root, run_dir, remote


def _invoke(args: list[str], env: dict[str, str] | None = None):
    empty = dict.fromkeys(TOKEN_VARIABLES, "")
    return CliRunner().invoke(main, args, env={**empty, **(env or {})})


# ------------------------------------------------------------------ review, gate, body


def test_review_of_a_run(evolved):
    root, run_dir = evolved
    review = load_review(run_dir, SkillRepo.open(root).git)
    head = review.headline
    assert (head.suite, head.split, head.model, head.seeds, head.tasks) == (
        "wikitq",
        "test",
        "fake/m",
        [0, 1],
        12,
    )
    assert (head.s0.passed, head.sstar.passed, head.baseline.passed) == (12, 20, 6)
    assert (head.paired.only_b, head.paired.only_a, head.paired.n) == (8, 0, 24)
    assert head.paired.ci.low > 0
    assert [t.task_id for t in review.fixed] == ["t06", "t07", "t08", "t09"]
    assert review.broken == []
    assert [e.support for e in review.edits] == [1, 2]
    assert review.edits[1].ablate.effect == 0.125 and review.edits[0].ablate is None
    assert review.changelog == ["Parse numbers", "Check units"]
    assert review.analyses == {"error-agentic kept": 2, "error-agentic dropped": 1}
    assert review.merges == {"merged": 1} and review.merge_levels == 1
    assert {u.ref: (u.s0, u.sstar) for u in review.usage} == {
        "SKILL.md#demo/answers": (0.0, 1.0),
        "SKILL.md#demo/parsing": (1.0, 0.5),
    }
    assert review.cost[0].calls == 4 and review.cost[0].cache_hits == 1
    assert [(f.path, f.added, f.removed) for f in review.files] == [
        (f"{SKILL_PATH}/SKILL.md", 2, 0)
    ]
    assert len(review.provenance_refs) == 2 and review.missing == []


def test_an_edited_section_nothing_used_is_listed(tmp_path):
    """The body listed only sections some trajectory used: the sections the edits went into
    were missing exactly when nobody read them (a new user's report)."""
    root, run_dir = build_run(tmp_path)
    path = run_dir / "evals" / "trajectories.jsonl"
    path.write_text(path.read_text().replace('"section_id":"demo/answers"', '"section_id":"x"'))
    review = load_review(run_dir, SkillRepo.open(root).git)
    usage = {u.ref: (u.s0, u.sstar) for u in review.usage}
    assert usage["SKILL.md#demo/answers"] == (0.0, 0.0)  # edited, never used: still shown


def test_body_has_its_tables(evolved):
    root, run_dir = evolved
    review = load_review(run_dir, SkillRepo.open(root).git)
    body = render_body(review, check_gate(review))
    assert body.startswith(f"<!-- trace2skill:run={RUN} -->")
    for heading in (
        "## Scores",
        "### Tasks S* broke",
        "### Tasks S* fixed",
        "## Edits",
        "## Changelog",
        "## Files",
        "## Section usage",
        "## How the patches were made",
        "## Cost and time",
        "## Review and reproduce",
    ):
        assert heading in body, heading
    assert "| S0 (before) | 50.0% |" in body and "| S* (after) | 83.3% |" in body
    assert "| no skill | 25.0% |" in body
    assert "**S* - S0 = +33.3 pp**, paired 95% CI [+16.7 pp, " in body
    assert "8 fixed, 0 broken" in body
    assert "| `t06` | 0/2 | 2/2 |" in body
    # Effects read as the report reads them: > 0 helps (the ablation line's delta was -0.125).
    # With n and p, as the report gives them: a CI on a few tasks says little on its own.
    row = (
        "| Answers | Check the unit the question asks for. | 2 | +12.5 pp [+0.0 pp, +25.0 pp] "
        "(n=24, p=0.125) | +8.3 pp [+0.0 pp, +16.7 pp] (n=24, p=0.5) |"
    )
    assert row in body
    assert "Gate: **passed**" in body
    assert f"trace2skill provenance {SKILL_PATH}/SKILL.md --ref t2s/{RUN}/result" in body
    assert "## Not shown" not in body


def test_missing_files_are_named_not_fatal(tmp_path):
    root, run_dir = build_run(tmp_path, files=(), evals=False)
    review = load_review(run_dir, SkillRepo.open(root).git)
    gate = check_gate(review)
    body = render_body(review, gate)
    assert review.headline is None and not gate.passed
    assert gate.reasons == ["no paired evaluation of S0 and S* in the run"]
    assert "## Not shown" in body
    for name in ("merges.jsonl", "ablations.jsonl", "analyses.jsonl", "llm_calls.jsonl"):
        assert f"`{name}` (not written by this run yet)" in body
    assert "(the final patch): no per-edit table" in body
    assert "the evaluation of S0 and S*" in body


def test_gate_counts_broken_tasks(tmp_path):
    root, run_dir = build_run(tmp_path, sstar="regress", files=())
    review = load_review(run_dir, SkillRepo.open(root).git)
    assert [(t.task_id, t.s0_passed, t.sstar_passed) for t in review.broken] == [("t00", 2, 1)]
    gate = check_gate(review)
    assert not gate.passed
    assert gate.reasons == ["S* breaks 1 task(s) S0 passed in every seed (at most 0 allowed): t00"]
    assert check_gate(review, max_regressions=1).passed
    body = render_body(review, gate)
    assert "Gate: **failed** (the pull request opens only with `--force`):" in body
    assert "| `t00` | 2/2 | 1/2 |" in body


def test_gate_refuses_no_gain(tmp_path):
    root, run_dir = build_run(tmp_path, sstar="s0", files=())
    review = load_review(run_dir, SkillRepo.open(root).git)
    gate = check_gate(review)
    assert not gate.passed and gate.reasons[0].startswith("S* does not beat S0: S* - S0 = +0.0")


def test_gate_refuses_a_gain_a_few_tasks_cannot_show(evolved):
    """Found by a new-user trial: 4 test tasks, 3 fixed: CI [+25, +100] pts passed the gate
    although exact McNemar p = 0.25."""
    root, run_dir = evolved
    review = load_review(run_dir, SkillRepo.open(root).git)
    assert review.headline is not None and check_gate(review).passed
    few = review.headline.paired.model_copy(
        update={"n": 4, "only_a": 0, "only_b": 3, "difference": 0.75, "p_value": 0.25,
                "ci": review.headline.paired.ci.model_copy(update={"low": 0.25, "high": 1.0}),
                "mde_conservative": 0.998}
    )  # fmt: skip
    small = review.model_copy(
        update={"headline": review.headline.model_copy(update={"paired": few})}
    )
    gate = check_gate(small)
    assert not gate.passed and gate.reasons[0].startswith("S* - S0 = +75.0")
    assert (
        "not significant: exact McNemar p = 0.25 (needs < 0.05) with 4 paired tasks"
        in (gate.reasons[0])
    )


def test_model_text_cannot_mention_or_break_tables(evolved):
    root, run_dir = evolved
    review = load_review(run_dir, SkillRepo.open(root).git)
    review.changelog = ["ping @octocat | and <script>"]
    review.usage = review.usage * (MAX_ROWS + 5)
    body = render_body(review, check_gate(review))
    assert "@octocat" not in body and "@\u200boctocat" in body
    assert "\\| and &lt;script>" in body
    assert f"... and {len(review.usage) - MAX_ROWS} more" in body


# ------------------------------------------------------------------ dry run


def test_dry_run_prints_body_and_calls_without_sending(tmp_path, api):
    state, url = api
    root, run_dir, _ = _with_remote(tmp_path)
    result = _invoke(
        ["pr", str(run_dir), "--repo", str(root), "--dry-run", "--github-repo", "o/r",
         "--api-url", url],
        env={"GITHUB_TOKEN": TOKEN},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"-> refs/heads/t2s/{RUN}/result" in out
    assert f"GET /repos/o/r/pulls?head=o:t2s/{RUN}/result&base=main&state=open" in out
    assert "Token: found (not shown)" in out and TOKEN not in out
    assert "Gate: passed" in out and "## Scores" in out
    assert state.requests == []
    assert git(tmp_path / "remote.git", "branch", "--list", "t2s/*") == ""


def test_dry_run_reads_the_runs_bundle_in_a_fresh_clone(tmp_path):
    root, run_dir = build_run(tmp_path)
    repo = SkillRepo.open(root)
    export_bundle(repo, RUN, run_dir / "refs.bundle")
    git(tmp_path, "clone", "-q", str(root), "clone")
    clone = tmp_path / "clone"
    (clone / "runs").mkdir()
    os.rename(run_dir, clone / "runs" / RUN)  # the run folder travels with the clone
    result = _invoke(["pr", str(clone / "runs" / RUN), "--repo", str(clone), "--dry-run"])
    assert result.exit_code == 1, result.output  # the plan has a problem: the remote
    assert "Would import the run's refs from" in result.output
    assert "| S* (after) | 83.3% |" in result.output
    assert "Token: missing (set TRACE2SKILL_PR_TOKEN, GH_TOKEN or GITHUB_TOKEN)" in result.output
    assert "is not a GitHub URL: pass --github-repo OWNER/NAME" in result.output
    assert SkillRepo.open(clone).run_refs(RUN) == {}  # a dry run imports nothing


# ------------------------------------------------------------------ publishing


def test_pr_pushes_opens_and_updates_the_same_pr(tmp_path, api):
    state, url = api
    root, run_dir, remote = _with_remote(tmp_path)
    args = ["pr", str(run_dir), "--repo", str(root), "--github-repo", "o/r", "--api-url", url]
    first = _invoke([*args, "--draft", "--provenance"], env={"GITHUB_TOKEN": TOKEN})
    assert first.exit_code == 0, first.output
    assert "Opened pull request #1: https://github.com/o/r/pull/1" in first.output
    result = SkillRepo.open(root).run_refs(RUN)[f"t2s/{RUN}/result"]
    assert git(remote, "rev-parse", f"t2s/{RUN}/result").strip() == result
    pushed = git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads/t2s/")
    assert len(pushed.split()) == 4  # base, two patches, result
    pull = state.pulls[0]
    assert pull["draft"] is True and pull["head"]["ref"] == f"t2s/{RUN}/result"
    assert pull["title"] == "trace2skill: evolve demo (run r1): 50.0% -> 83.3%"
    assert (
        "## Edits" in pull["body"]
        and f"git fetch https://github.com/o/r.git 'refs/heads/t2s/{RUN}/*" in pull["body"]
    )
    assert state.labels == {1: ["trace2skill"]}
    assert TOKEN not in first.output

    again = _invoke([*args, "--label", "skills"], env={"GH_TOKEN": TOKEN})
    assert again.exit_code == 0, again.output
    assert "Pushed: nothing (already up to date)" in again.output
    assert "Updated pull request #1" in again.output
    assert len(state.pulls) == 1 and state.labels[1] == ["trace2skill", "skills"]
    assert state.calls()[-3:] == [
        "GET /repos/o/r/pulls",
        "PATCH /repos/o/r/pulls/1",
        "POST /repos/o/r/issues/1/labels",
    ]


def test_pr_opened_meanwhile_is_updated(tmp_path, api):
    state, url = api
    root, run_dir, _ = _with_remote(tmp_path)
    state.pulls.append(
        {"number": 1, "html_url": "u", "state": "open", "title": "t", "body": "b",
         "draft": False, "head": {"ref": f"t2s/{RUN}/result"}, "base": {"ref": "main"}}
    )  # fmt: skip
    state.script("GET", "/repos/o/r/pulls", 200, [])  # our first look sees none
    state.script(
        "POST",
        "/repos/o/r/pulls",
        422,
        {"message": "Validation Failed", "errors": [{"message": "A pull request already exists"}]},
    )
    plan, _ = plan_pull_request(
        run_dir, SkillRepo.open(root), github_repo="o/r", api_url=url, env={}
    )
    done = publish(plan, SkillRepo.open(root), TOKEN)
    assert (done.number, done.created) == (1, False)
    assert state.pulls[0]["body"].startswith("<!-- trace2skill:run=r1 -->")


def test_gate_refuses_before_pushing_unless_forced(tmp_path, api):
    state, url = api
    root, run_dir, remote = _with_remote(tmp_path, sstar="regress", files=())
    args = ["pr", str(run_dir), "--repo", str(root), "--github-repo", "o/r", "--api-url", url]
    refused = _invoke(args, env={"GITHUB_TOKEN": TOKEN})
    assert refused.exit_code == 4  # the gate's own status: a CI job tells it from an error
    # An outcome, not an error: a green CI job's log shows no "Error:" line for it.
    assert refused.output.startswith(
        "Not opening the PR: S* breaks 1 task(s) S0 passed in every seed"
    )
    assert state.requests == [] and git(remote, "branch", "--list", "t2s/*") == ""
    # A dry run exits as the real run would, and says when --force overrides the gate.
    dry = _invoke([*args, "--dry-run"], env={"GITHUB_TOKEN": TOKEN})
    assert dry.exit_code == 4 and "Gate: would refuse (pass --force" in dry.output
    dry_forced = _invoke([*args, "--dry-run", "--force"], env={"GITHUB_TOKEN": TOKEN})
    assert dry_forced.exit_code == 0 and "Gate: failed, overridden by --force:" in dry_forced.output
    # S* is never pushed onto the base branch itself.
    onto_base = _invoke([*args, "--branch", "main", "--force"], env={"GITHUB_TOKEN": TOKEN})
    assert onto_base.exit_code == 1 and "is the base branch" in onto_base.output
    empty = _invoke([*args, "--dry-run", "--label", " "], env={"GITHUB_TOKEN": TOKEN})
    assert empty.exit_code == 2 and "a label cannot be empty" in empty.output
    ftp = _invoke([*args[:-2], "--dry-run", "--api-url", "ftp://x"], env={"GITHUB_TOKEN": TOKEN})
    assert ftp.exit_code == 2 and "is not an http(s) URL" in ftp.output
    dry_onto_base = _invoke([*args, "--dry-run", "--branch", "main"], env={"GITHUB_TOKEN": TOKEN})
    assert (
        dry_onto_base.exit_code == 1 and "Problem: the head branch 'main'" in dry_onto_base.output
    )
    assert state.requests == [] and git(remote, "branch", "--list", "t2s/*") == ""
    assert _invoke([*args, "--max-regressions", "1"], env={"GITHUB_TOKEN": TOKEN}).exit_code == 0
    forced = _invoke([*args, "--force"], env={"GITHUB_TOKEN": TOKEN})
    assert forced.exit_code == 0, forced.output
    body = state.pulls[0]["body"]
    assert "Gate: **failed**; this pull request was opened anyway with `--force`:" in body
    assert "opens only with `--force`" not in body


def test_existing_branch_with_other_commits(tmp_path, api):
    _, url = api
    root, run_dir, remote = _with_remote(tmp_path)
    git(root, "push", "-q", "origin", f"main:refs/heads/t2s/{RUN}/result")
    (root / "other.txt").write_text("x\n")
    git(root, "add", "other.txt")
    git(root, "commit", "-q", "-m", "someone else's work")
    git(root, "push", "-q", "-f", "origin", f"HEAD:refs/heads/t2s/{RUN}/result")
    args = ["pr", str(run_dir), "--repo", str(root), "--github-repo", "o/r", "--api-url", url]
    refused = _invoke(args, env={"GITHUB_TOKEN": TOKEN})
    assert refused.exit_code == 1
    assert f"branch t2s/{RUN}/result already exists on origin" in refused.output
    assert "--force-push" in refused.output
    replaced = _invoke([*args, "--force-push"], env={"GITHUB_TOKEN": TOKEN})
    assert replaced.exit_code == 0, replaced.output
    result = SkillRepo.open(root).run_refs(RUN)[f"t2s/{RUN}/result"]
    assert git(remote, "rev-parse", f"t2s/{RUN}/result").strip() == result


def test_branch_protection_is_reported(tmp_path, api):
    _, url = api
    root, run_dir, remote = _with_remote(tmp_path)
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'error: GH006: Protected branch update failed' >&2\nexit 1\n")
    hook.chmod(0o755)
    args = ["pr", str(run_dir), "--repo", str(root), "--github-repo", "o/r", "--api-url", url]
    result = _invoke(args, env={"GITHUB_TOKEN": TOKEN})
    assert result.exit_code == 1
    assert result.output.startswith("Error: branch protection on origin")


@pytest.mark.parametrize(
    ("setup", "env", "message"),
    [
        ("no-remote", {"GITHUB_TOKEN": TOKEN}, "Error: no remote 'origin' in "),
        (
            "remote",
            {},
            "Error: no GitHub token: set TRACE2SKILL_PR_TOKEN, GH_TOKEN or GITHUB_TOKEN",
        ),
        ("remote", {"GITHUB_TOKEN": "bad"}, "Error: GitHub rejected the token (401"),
    ],
)
def test_one_line_errors(tmp_path, api, setup, env, message):
    state, url = api
    state.script("GET", "/repos/o/r/pulls", 401, {"message": "Bad credentials"})
    if setup == "remote":
        root, run_dir, _ = _with_remote(tmp_path)
    else:
        root, run_dir = build_run(tmp_path, files=())
    result = _invoke(
        ["pr", str(run_dir), "--repo", str(root), "--github-repo", "o/r", "--api-url", url], env
    )
    assert result.exit_code == 1
    assert result.output.startswith(message), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    if "rejected the token" in message:  # the push went through before the API said no
        assert f"the branch t2s/{RUN}/result was pushed; run the same command again" in (
            result.output
        )


def test_not_a_run_and_no_result(tmp_path):
    root, run_dir = build_run(tmp_path, files=())
    assert "is not a run folder" in _invoke(["pr", str(root), "--repo", str(root)]).output
    # As `report` says it: the folder is not there at all (a typo), not "no manifest.json".
    missing = _invoke(["pr", str(root / "runs" / "nope"), "--repo", str(root)])
    assert (
        missing.output == f"Error: run folder {root}/runs/nope does not exist: give runs/<run-id>\n"
    )
    git(root, "update-ref", "-d", f"refs/heads/t2s/{RUN}/result")
    (run_dir / "manifest.json").write_text(
        (run_dir / "manifest.json").read_text().replace('"result_commit"', '"old"')
    )
    result = _invoke(["pr", str(run_dir), "--repo", str(root), "--dry-run"])
    assert (
        result.output
        == f"Error: run '{RUN}' has no result (t2s/{RUN}/result): finish the evolution first\n"
    )


def test_token_reaches_git_only_for_the_https_host():
    env = _auth_env("https://github.com/o/r.git", "github.com", TOKEN)
    key = next(k for k in env if k.startswith("GIT_CONFIG_KEY_"))
    assert env[key] == "http.https://github.com/.extraheader"
    value = env[key.replace("KEY", "VALUE")]
    assert base64.b64decode(value.split()[-1]).decode() == f"x-access-token:{TOKEN}"
    assert _auth_env("git@github.com:o/r.git", "github.com", TOKEN) == {}
    assert _auth_env("https://evil.example.com/o/r.git", "github.com", TOKEN) == {}


def test_client_is_built_from_the_plan(tmp_path, api):
    _, url = api
    root, run_dir, _ = _with_remote(tmp_path)
    plan, _ = plan_pull_request(
        run_dir, SkillRepo.open(root), github_repo="o/r", env={"GITHUB_API_URL": url}
    )
    assert plan.api_url == url
    with pytest.raises(GitHubError, match="no GitHub token"):
        publish(plan, SkillRepo.open(root), None)
    failed = plan.gate.model_copy(update={"passed": False, "reasons": ["test"]})
    with pytest.raises(GateRefused, match=r"test \(--force opens it anyway\)"):
        publish(
            plan.model_copy(update={"gate": failed}),
            SkillRepo.open(root),
            TOKEN,
            client=GitHubClient(TOKEN, url),
        )


def test_enterprise_remote_gives_the_enterprise_api(tmp_path):
    root, run_dir = build_run(tmp_path, files=())
    git(root, "remote", "add", "origin", "https://ghe.example.com/team/skills.git")
    plan, _ = plan_pull_request(run_dir, SkillRepo.open(root), env={})
    assert (plan.github, plan.api_url) == ("team/skills", "https://ghe.example.com/api/v3")
    assert plan.problems == []
    assert "https://ghe.example.com/team/skills/compare/main...t2s/r1/result" in plan.body
    env = {
        "GITHUB_API_URL": "https://ghe.example.com/api/v3/",
        "GITHUB_SERVER_URL": "https://ghe.example.com",
        "GITHUB_REPOSITORY": "team/skills",
        "GITHUB_RUN_ID": "42",
    }
    plan, _ = plan_pull_request(run_dir, SkillRepo.open(root), env=env)
    assert "https://ghe.example.com/team/skills/actions/runs/42" in plan.body


def test_skill_path_recorded_absolute_or_not_at_all(tmp_path):
    root, run_dir = build_run(tmp_path, files=())
    manifest = run_dir / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(
        text.replace('"skill_path": "skills/demo"', f'"skill_path": "{root}/skills/demo"')
    )
    assert load_review(run_dir, SkillRepo.open(root).git).skill_path == SKILL_PATH
    manifest.write_text(text.replace('"skill_path": "skills/demo"', '"other": 1'))
    assert load_review(run_dir, SkillRepo.open(root).git).skill_path == SKILL_PATH  # inferred


def test_pr_from_a_fresh_clone_imports_the_runs_bundle(tmp_path, api):
    state, url = api
    root, run_dir, remote = _with_remote(tmp_path)
    export_bundle(SkillRepo.open(root), RUN, run_dir / "refs.bundle")
    git(tmp_path, "clone", "-q", str(remote), "clone")
    clone = tmp_path / "clone"
    (clone / "runs").mkdir()
    os.rename(run_dir, clone / "runs" / RUN)
    args = ["pr", f"{clone}/runs/{RUN}", "--repo", str(clone), "--github-repo", "o/r"]
    result = _invoke([*args, "--api-url", url], env={"GITHUB_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    result_commit = SkillRepo.open(clone).run_refs(RUN)[f"t2s/{RUN}/result"]
    assert git(remote, "rev-parse", f"t2s/{RUN}/result").strip() == result_commit
    assert f"trace2skill bundle import runs/{RUN}/refs.bundle" in state.pulls[0]["body"]


def test_a_plan_problem_comes_before_the_gate(tmp_path, api):
    """A trial: a gate-refused run with a non-GitHub remote exited 4 ("green, no PR" in CI)
    while --dry-run, which promises the real run's exit, said 1 for the remote."""
    state, url = api
    root, run_dir, remote = _with_remote(tmp_path, sstar="regress", files=())
    args = ["pr", str(run_dir), "--repo", str(root), "--api-url", url]
    for extra in ([], ["--dry-run"]):
        result = _invoke([*args, *extra], env={"GITHUB_TOKEN": TOKEN})
        assert result.exit_code == 1, (extra, result.output)
        assert f"remote 'origin' ({remote}) is not a GitHub URL" in result.output
    assert state.requests == [] and git(remote, "branch", "--list", "t2s/*") == ""


def test_provenance_beside_another_branch_pushes_the_result_ref(tmp_path, api):
    """The body's review commands name t2s/<run>/result: with --branch it was not pushed,
    and the fetch line named `origin` although the refs went to --remote upstream."""
    state, url = api
    root, run_dir, remote = _with_remote(tmp_path)
    git(root, "remote", "rename", "origin", "upstream")
    args = ["pr", str(run_dir), "--repo", str(root), "--github-repo", "o/r", "--api-url", url]
    result = _invoke(
        [*args, "--remote", "upstream", "--branch", "review/x", "--provenance"],
        env={"GH_TOKEN": TOKEN},
    )
    assert result.exit_code == 0, result.output
    pushed = git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()
    assert {"review/x", f"t2s/{RUN}/result", f"t2s/{RUN}/base"} <= set(pushed)
    body = state.pulls[0]["body"]
    assert f"git fetch https://github.com/o/r.git 'refs/heads/t2s/{RUN}/*:" in body
    assert f"git log --graph --oneline t2s/{RUN}/base..t2s/{RUN}/result" in body


def test_a_base_named_as_the_result_branch_is_not_answered_with_it(tmp_path):
    root, run_dir, _ = _with_remote(tmp_path)
    args = ["pr", str(run_dir), "--repo", str(root), "--github-repo", "o/r", "--dry-run"]
    result = _invoke([*args, "--base", f"t2s/{RUN}/result"])
    assert result.exit_code == 1
    assert "pass --base the branch the PR merges into, or --branch NAME" in result.output
    assert "(default t2s/" not in result.output


def test_a_damaged_bundle_is_named(tmp_path):
    """A trial: a corrupt refs.bundle gave "git fetch failed: and the repository exists."."""
    root, run_dir = build_run(tmp_path, files=())
    export_bundle(SkillRepo.open(root), RUN, run_dir / "refs.bundle")
    data = (run_dir / "refs.bundle").read_bytes()
    git(tmp_path, "clone", "-q", str(root), "clone")
    clone = tmp_path / "clone"
    (clone / "runs").mkdir()
    os.rename(run_dir, clone / "runs" / RUN)
    bundle = clone / "runs" / RUN / "refs.bundle"
    args = ["pr", str(clone / "runs" / RUN), "--repo", str(clone), "--dry-run"]
    bundle.write_bytes(b"not a bundle\n")
    garbage = _invoke(args)
    assert garbage.output.startswith(
        f"Error: {bundle} is not a valid bundle for this repository: error: "
    ), garbage.output
    assert "does not look like a v2 or v3 bundle file" in garbage.output
    bundle.write_bytes(data[: len(data) - 40])  # the header whole, the pack cut short
    cut = _invoke(args)
    assert cut.output.startswith(f"Error: {bundle} is corrupt or truncated (git fetch failed: ")
    assert cut.exit_code == 1 and "and the repository exists." not in cut.output


def test_skill_path_must_be_the_runs_skill(tmp_path):
    """A trial: --skill-path of a skill the run did not evolve rendered a body about it."""
    root, run_dir = build_run(tmp_path, files=())
    result = _invoke(
        ["pr", str(run_dir), "--repo", str(root), "--dry-run", "--skill-path", "skills"]
    )
    assert result.output == (
        f"Error: --skill-path skills is not the skill run '{RUN}' evolved: that is "
        f"{SKILL_PATH} (leave --skill-path out)\n"
    )
    assert load_review(run_dir, SkillRepo.open(root).git, skill_path=f"{SKILL_PATH}/").skill_path


def test_the_rerun_command_scores_as_the_run_did(tmp_path, monkeypatch):
    """A trial's finding: the body's "re-run both skills" command of a run on a user's task
    file left out --scoring, so compare scored it exact (a run scored numeric read back as
    all failures, now refused). It names the run's scoring rule, and it runs."""
    root = rehearsed_jsonl_run(tmp_path, "u", "--tolerance", "0.5")
    monkeypatch.chdir(root)
    review = load_review(root / "runs" / "u", SkillRepo.open(root).git)
    body = render_body(review, check_gate(review))
    rerun = next(line for line in body.splitlines() if line.startswith("trace2skill compare t2s"))
    assert "--data TASKS.jsonl --scoring numeric --tolerance 0.5 " in rerun
    command = shlex.split(rerun.replace("TASKS.jsonl", TASKS))[1:]
    again = _invoke(command + rehearsal_options(tmp_path)[2:])
    assert again.exit_code == 0, again.output
    assert "B - A: +0.00" in again.output
