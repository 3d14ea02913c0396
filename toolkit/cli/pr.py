"""``trace2skill pr``: open (or update) a pull request with a run's evolved skill."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from toolkit.github import token_from_env
from toolkit.pull_request import (
    DEFAULT_LABELS,
    GATE_REFUSED_EXIT,
    describe_plan,
    plan_pull_request,
    publish,
)
from toolkit.repo import SkillRepo


@click.command("pr")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--remote", default="origin", show_default=True, help="Git remote to push to.")
@click.option("--base", default="main", show_default=True, help="Branch the PR merges into.")
@click.option("--branch", help="Head branch on the remote (default: t2s/<run>/result).")
@click.option("--draft", is_flag=True, help="Open the PR as a draft.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    help=f"Label to add (repeatable; default: {', '.join(DEFAULT_LABELS)}).",
)
@click.option(
    "--provenance",
    is_flag=True,
    help="Also push the run's other refs (base, patches, merges, and the ablate/, only/ and "
    "prune variants when made), so reviewers can fetch them and trace each line of S* to "
    "its patches and trajectories.",
)
@click.option(
    "--max-regressions",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Most tasks S0 passed in every seed that S* may break.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Open the PR even when the gate fails (S* not better than S0 with a paired CI above "
    "0 and McNemar p < 0.05, or too many broken tasks); the body lists why.",
)
@click.option(
    "--force-push",
    is_flag=True,
    help="Replace the head branch on the remote when it holds commits not in this run.",
)
@click.option("--dry-run", is_flag=True, help="Print the body, pushes and API calls; send nothing.")
@click.option(
    "--github-repo",
    metavar="OWNER/NAME",
    help="GitHub repository (default: read from the remote's URL).",
)
@click.option(
    "--api-url",
    metavar="URL",
    help="GitHub API base (default: $GITHUB_API_URL, api.github.com, or "
    "https://HOST/api/v3 for a GitHub Enterprise remote).",
)
@click.option(
    "--skill-path",
    help="The skill folder in the repository (default: from the run's manifest).",
)
@click.option(
    "--repo",
    "repo_path",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Any path inside the skills repository.",
)
def pr(
    run_dir: Path,
    remote: str,
    base: str,
    branch: str | None,
    draft: bool,
    labels: tuple[str, ...],
    provenance: bool,
    max_regressions: int,
    force: bool,
    force_push: bool,
    dry_run: bool,
    github_repo: str | None,
    api_url: str | None,
    skill_path: str | None,
    repo_path: Path,
) -> None:
    """Push a run's evolved skill (t2s/<run>/result) and open or update its pull request.

    The body is made from the run: S0 and S* pass rates with 95% CIs and the paired S* - S0
    difference, the tasks S* broke and fixed, each edit with its support (leaf patches) and
    ablation effects, the changelog, section usage, cost, and how to reproduce. Re-running
    updates the same PR. The token comes from TRACE2SKILL_PR_TOKEN, else GH_TOKEN, else
    GITHUB_TOKEN (needs contents and pull-requests write) and is never printed.

    A gate refuses the PR unless the paired 95% CI of S* - S0 is above 0, the exact McNemar
    p is below 0.05, and S* breaks at most --max-regressions tasks that S0 passed in every
    seed; --force opens it anyway (the body says so). Exit status: 0 done, 1 an error, 4 the
    gate refused (nothing pushed; a CI job can treat it as "no PR this time"). A problem in
    the plan (no remote, not a GitHub one) comes before the gate, and --dry-run exits as the
    real run would before any network call: 1 for a problem in the plan, else 4 for the gate.

    \b
    Examples:
      trace2skill pr runs/r1 --dry-run
      trace2skill pr runs/r1 --provenance --draft
      trace2skill pr runs/r1 --remote upstream --base develop --max-regressions 2
      GH_TOKEN=... trace2skill pr runs/r1 --api-url https://ghe.example.com/api/v3
    """
    if any(not label.strip() for label in labels):
        raise click.BadParameter("a label cannot be empty", param_hint="--label")
    if api_url and urlsplit(api_url).scheme not in ("http", "https"):
        raise click.BadParameter(
            f"{api_url!r} is not an http(s) URL (e.g. https://ghe.example.com/api/v3)",
            param_hint="--api-url",
        )
    repo = SkillRepo.open(repo_path)
    plan, _ = plan_pull_request(
        run_dir,
        repo,
        remote=remote,
        base=base,
        branch=branch,
        github_repo=github_repo,
        api_url=api_url,
        labels=labels or DEFAULT_LABELS,
        draft=draft,
        provenance=provenance,
        max_regressions=max_regressions,
        force=force,
        skill_path=skill_path,
    )
    token = token_from_env()
    if dry_run:
        click.echo(describe_plan(plan, token_found=token is not None))
        if plan.problems:
            sys.exit(1)
        if not plan.gate.passed and not force:
            sys.exit(GATE_REFUSED_EXIT)
        return
    result = publish(plan, repo, token, force_push=force_push)
    pushed = ", ".join(p.branch for p in result.pushed) or "nothing (already up to date)"
    click.echo(f"Pushed: {pushed}")
    verb = "Opened" if result.created else "Updated"
    click.echo(f"{verb} pull request #{result.number}: {result.url}")


COMMANDS = [pr]
