"""Open (or update) a pull request for an evolved skill: push the run's result, call GitHub.

:func:`plan_pull_request` works out everything without touching the network: the run's review
(:mod:`toolkit.review`), the gate, the remote and the GitHub repository behind it, the refs to
push, the title, body and labels. ``trace2skill pr --dry-run`` prints that plan.
:func:`publish` carries it out: refuses on a problem of the plan (a missing or non-GitHub remote:
checked first, as ``--dry-run`` does, so a broken setup is never hidden behind the gate), then
when the gate fails (unless forced), pushes ``t2s/<run>/result`` (and, asked, every other ref of
the run, so reviewers can inspect provenance) to a branch of the remote, then opens the PR or
updates the open one from the same branch, so re-running a run's ``pr`` updates one PR.

The token (:func:`toolkit.github.token_from_env`) reaches ``git push`` through the environment
of that one process (``http.extraheader`` via ``GIT_CONFIG_*``), as actions/checkout does: never
on a command line, in ``.git/config`` or in any output.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from toolkit.errors import RepoError, ToolkitError
from toolkit.github import (
    DEFAULT_API_URL,
    NO_TOKEN,
    TOKEN_NAMES,
    GitHubClient,
    GitHubError,
    GitHubRepo,
    parse_remote_url,
    parse_repo,
)
from toolkit.repo import SkillRepo, import_bundle, read_bundle
from toolkit.repo.plumbing import Git
from toolkit.review import Gate, Links, RunReview, check_gate, load_review, render_body
from toolkit.review import render_title as _title
from toolkit.rollout import read_manifest

DEFAULT_LABELS = ("trace2skill",)


#: Exit status of ``trace2skill pr`` when the gate refuses (nothing pushed; no error).
GATE_REFUSED_EXIT = 4


class GateRefused(ToolkitError):
    """The run's evidence does not support the PR (and ``--force`` was not given)."""

    exit_code = GATE_REFUSED_EXIT
    label = "Not opening the PR"  # an outcome, not an error: CI jobs stay green on it


class PushRef(BaseModel):
    """One ref to push: a commit to a branch of the remote."""

    commit: str
    branch: str


class PullRequestPlan(BaseModel):
    """What ``trace2skill pr`` will do (or, with ``--dry-run``, would do)."""

    run_id: str
    remote: str
    remote_url: str | None = Field(description="None when the remote is not configured.")
    github: str | None = Field(description="owner/name on GitHub; None when unknown.")
    web_url: str | None = None
    api_url: str | None = None
    branch: str = Field(description="The PR's head branch on the remote.")
    base: str
    pushes: list[PushRef]
    title: str
    body: str
    labels: list[str]
    draft: bool
    gate: Gate
    force: bool = Field(
        default=False, description="Open the PR even when the gate fails (the body says so)."
    )
    bundle_import: str | None = Field(
        default=None, description="A refs.bundle to import first (the run's refs are absent)."
    )
    problems: list[str] = Field(
        default_factory=list, description="What would stop a real run (shown by --dry-run)."
    )


class PullRequestResult(BaseModel):
    """What :func:`publish` did."""

    number: int
    url: str
    created: bool = Field(description="True: a new PR; False: the open one was updated.")
    pushed: list[PushRef] = Field(description="Refs pushed (unchanged ones are skipped).")


# ---------------------------------------------------------------------------------------------
# The run's refs: in the repository, or read from the run's refs.bundle
# ---------------------------------------------------------------------------------------------


@contextmanager
def _bundle_git(bundle: Path) -> Iterator[Git]:
    """A throwaway bare repository holding a bundle's refs (for a dry run: nothing imported).

    The bundle must have passed :func:`toolkit.repo.read_bundle` (its header); a damaged pack
    is reported here as ``bundle import`` reports it.
    """
    tmp = Path(tempfile.mkdtemp(prefix="t2s-bundle-"))
    try:
        git = Git(tmp, tmp)
        git.run(["init", "--quiet", "--bare"])
        try:
            spec = "refs/heads/t2s/*:refs/heads/t2s/*"
            git.run(["fetch", "--quiet", str(bundle.resolve()), spec])
        except RepoError as exc:
            raise RepoError(f"{bundle} is corrupt or truncated ({exc})") from None
        yield git
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _has_run(git: Git, run: str) -> bool:
    return bool(git.refs(f"refs/heads/t2s/{run}/"))


# ---------------------------------------------------------------------------------------------
# Planning (no network)
# ---------------------------------------------------------------------------------------------


def _remote_url(repo: SkillRepo, remote: str) -> str | None:
    proc = repo.git.run(["remote", "get-url", remote], ok_codes=(0, 2, 128))
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def plan_pull_request(
    run_dir: str | Path,
    repo: SkillRepo,
    *,
    remote: str = "origin",
    base: str = "main",
    branch: str | None = None,
    github_repo: str | None = None,
    api_url: str | None = None,
    labels: tuple[str, ...] | list[str] = DEFAULT_LABELS,
    draft: bool = False,
    provenance: bool = False,
    max_regressions: int = 0,
    force: bool = False,
    skill_path: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[PullRequestPlan, RunReview]:
    """Plan the PR of run ``run_dir`` from ``repo`` (see the module docstring).

    ``force`` opens the PR even when the gate fails; the body then says it was forced.

    Raises:
        ToolkitError: no such folder, or not a run folder; the run's refs are neither in
            ``repo`` nor in a valid ``refs.bundle`` of the run; the run has no result;
            ``skill_path`` is not the skill the run evolved.
    """
    env = os.environ if env is None else env
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ToolkitError(f"run folder {run_dir} does not exist: give runs/<run-id>")
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise ToolkitError(f"{run_dir} is not a run folder (no manifest.json)")
    run = manifest.run_id
    bundle = run_dir / "refs.bundle"
    bundle_import = None
    if _has_run(repo.git, run):
        review = load_review(run_dir, repo.git, skill_path=skill_path)
        refs = repo.git.refs(f"refs/heads/t2s/{run}/")
    elif bundle.is_file():
        bundle_import = str(bundle)
        # The check `bundle import` makes: a damaged file says so, not git fetch's last line.
        held = read_bundle(repo, bundle).run
        if held != run:
            raise ToolkitError(f"{bundle} holds the refs of run {held!r}, not of {run!r}")
        with _bundle_git(bundle) as git:
            review = load_review(run_dir, git, skill_path=skill_path)
            refs = git.refs(f"refs/heads/t2s/{run}/")
    else:
        raise ToolkitError(
            f"run {run!r} has no refs in {repo.root} and {run_dir} has no refs.bundle: run "
            "`trace2skill pr` in the repository the run evolved"
        )
    with suppress(RepoError):  # commands in the body name the run folder as the repo sees it
        review = review.model_copy(update={"run_dir": repo.relpath(run_dir) or "."})
    gate = check_gate(review, max_regressions)
    problems: list[str] = []
    url = _remote_url(repo, remote)
    if url is None:
        problems.append(
            f"no remote {remote!r} in {repo.root}: add one (git remote add {remote} URL) "
            "or pass --remote NAME"
        )
    target: GitHubRepo | None = parse_remote_url(url) if url else None
    if github_repo:
        target = parse_repo(github_repo, target.host if target else "github.com")
    if target is None and url is not None:
        problems.append(
            f"remote {remote!r} ({url}) is not a GitHub URL: pass --github-repo OWNER/NAME"
        )
    result_branch = f"t2s/{run}/result"
    head_branch = branch or result_branch
    if head_branch == base:
        fix = (  # the default head branch is the base: the --base is what is wrong
            "pass --base the branch the PR merges into, or --branch NAME"
            if head_branch == result_branch
            else f"pass another --branch (default {result_branch})"
        )
        problems.append(
            f"the head branch {head_branch!r} is the base branch: S* would be pushed onto "
            f"{base} unreviewed; {fix}"
        )
    pushes = [PushRef(commit=review.result_commit, branch=head_branch)]
    if provenance:
        # Every ref of the run, t2s/<run>/result too when the head branch has another name:
        # the body's review commands name it.
        for name, oid in sorted(refs.items()):
            short = name.removeprefix("refs/heads/")
            if short != head_branch:
                pushes.append(PushRef(commit=oid, branch=short))
    server = env.get("GITHUB_SERVER_URL")
    actions_run = (
        f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        if server and env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID")
        else None
    )
    links = Links(
        web_url=target.web_url if target else None,
        branch=head_branch,
        base=base,
        provenance_pushed=provenance,
        # A reviewer's clone names the repository's remote as it likes (often origin, not
        # our --remote): the repository's URL fetches from it whatever the name.
        fetch_from=f"{target.web_url}.git" if target else remote,
        actions_run=actions_run,
    )
    plan = PullRequestPlan(
        run_id=run,
        remote=remote,
        remote_url=url,
        github=target.full_name if target else None,
        web_url=target.web_url if target else None,
        api_url=(api_url or env.get("GITHUB_API_URL") or (target.api_url if target else None)),
        branch=head_branch,
        base=base,
        pushes=pushes,
        title=_title(review),
        body=render_body(review, gate, links, forced=force and not gate.passed),
        labels=list(dict.fromkeys(labels)),
        draft=draft,
        gate=gate,
        force=force,
        bundle_import=bundle_import,
        problems=problems,
    )
    return plan, review


def describe_plan(plan: PullRequestPlan, token_found: bool) -> str:
    """The plan as text for ``--dry-run``: pushes, API calls (no headers), gate, problems."""
    repo = plan.github or "OWNER/NAME"
    lines = []
    if plan.bundle_import:
        lines.append(f"Would import the run's refs from {plan.bundle_import} first.")
    lines.append(f"Would push to {plan.remote} ({plan.remote_url or 'not configured'}):")
    lines += [f"  {p.commit[:12]} -> refs/heads/{p.branch}" for p in plan.pushes]
    lines.append(f"Would call {plan.api_url or 'the GitHub API'}:")
    owner = repo.split("/")[0]
    query = f"head={owner}:{plan.branch}&base={plan.base}&state=open"
    lines.append(f"  GET /repos/{repo}/pulls?{query}")
    lines.append(
        f"  POST /repos/{repo}/pulls (head {plan.branch}, base {plan.base}, draft "
        f"{str(plan.draft).lower()}), or PATCH /repos/{repo}/pulls/<number> if one is open"
    )
    if plan.labels:
        lines.append(f"  POST /repos/{repo}/issues/<number>/labels {plan.labels}")
    lines.append(
        "Token: found (not shown)" if token_found else f"Token: missing (set {TOKEN_NAMES})"
    )
    if plan.gate.passed:
        lines.append("Gate: passed")
    elif plan.force:
        lines.append("Gate: failed, overridden by --force:")
        lines += [f"  - {r}" for r in plan.gate.reasons]
    else:
        lines.append("Gate: would refuse (pass --force to open it anyway):")
        lines += [f"  - {r}" for r in plan.gate.reasons]
    lines += [f"Problem: {p}" for p in plan.problems]
    lines += ["", f"Title: {plan.title}", "", plan.body]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Carrying it out
# ---------------------------------------------------------------------------------------------


def _auth_env(remote_url: str, host: str | None, token: str) -> dict[str, str]:
    """Environment for one ``git push`` that sends the token to the remote's host only."""
    parts = urlsplit(remote_url)
    if parts.scheme != "https" or not parts.hostname or parts.hostname.lower() != host:
        return {}  # ssh keys or a local path: git's own credentials apply
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    index = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    return {
        "GIT_CONFIG_COUNT": str(index + 1),
        f"GIT_CONFIG_KEY_{index}": f"http.https://{parts.hostname}/.extraheader",
        f"GIT_CONFIG_VALUE_{index}": f"AUTHORIZATION: basic {basic}",
    }


def _push_error(detail: str, plan: PullRequestPlan, token: str) -> GitHubError:
    low = detail.lower()
    where = f"{plan.remote} ({plan.remote_url})"
    if "protected branch" in low or "gh006" in low or "protection" in low:
        text = f"branch protection on {where} refused the push of {plan.branch}: {detail}"
    elif any(s in low for s in ("authentication failed", "could not read username", "403")):
        text = (
            f"{where} refused the push: the token needs 'contents: write' (set "
            f"{TOKEN_NAMES}): {detail}"
        )
    elif "not found" in low or "does not appear to be a git repository" in low:
        text = f"{where} is not reachable as a repository: {detail}"
    elif "non-fast-forward" in low or "rejected" in low or "stale info" in low:
        text = (
            f"branch {plan.branch} on {where} has commits that are not in this run's result: "
            "pass --force-push to replace it, or --branch NAME for another branch"
        )
    else:
        text = f"git push to {where} failed: {detail}"
    return GitHubError(text.replace(token, "***") if token else text)


def _push(repo: SkillRepo, plan: PullRequestPlan, token: str, force_push: bool) -> list[PushRef]:
    """Push the plan's refs; skip those already there; return what was pushed."""
    assert plan.remote_url is not None
    env = _auth_env(plan.remote_url, urlsplit(plan.web_url or "").hostname, token)
    names = [f"refs/heads/{p.branch}" for p in plan.pushes]
    try:
        listed = repo.git.run(["ls-remote", plan.remote, *names], env=env).stdout.decode()
    except RepoError as exc:
        raise _push_error(str(exc).removeprefix("git ls-remote failed: "), plan, token) from None
    remote_refs = {
        name: oid for oid, name in (line.split("\t", 1) for line in listed.splitlines() if line)
    }
    leases: list[str] = []
    refspecs: list[str] = []
    pushed: list[PushRef] = []
    for ref, name in zip(plan.pushes, names, strict=True):
        old = remote_refs.get(name)
        if old == ref.commit:
            continue
        if old is not None:
            ancestor = repo.git.run(
                ["merge-base", "--is-ancestor", old, ref.commit], ok_codes=(0, 1, 128)
            )
            if ancestor.returncode != 0 and not force_push:
                raise GitHubError(
                    f"branch {ref.branch} already exists on {plan.remote} at {old[:12]} with "
                    "commits not in this run: pass --force-push to replace it, or --branch NAME"
                )
            if ancestor.returncode != 0:
                leases.append(f"--force-with-lease={name}:{old}")
        refspecs.append(f"{ref.commit}:{name}")
        pushed.append(ref)
    if pushed:
        try:
            repo.git.run(["push", "--porcelain", *leases, plan.remote, *refspecs], env=env)
        except RepoError as exc:
            raise _push_error(str(exc).removeprefix("git push failed: "), plan, token) from None
    return pushed


def publish(
    plan: PullRequestPlan,
    repo: SkillRepo,
    token: str | None,
    *,
    force_push: bool = False,
    client: GitHubClient | None = None,
) -> PullRequestResult:
    """Carry out ``plan``: problems, gate, (bundle import,) push, then open or update the PR.

    The plan's problems come before the gate, in the order ``--dry-run`` exits on them: a
    broken remote is an error to fix even in a run whose gate would refuse.
    ``client`` defaults to a :class:`GitHubClient` on ``plan.api_url`` with ``token``.

    Raises:
        ToolkitError: a problem the plan found (no remote, unknown GitHub repository).
        GateRefused: the gate failed and ``plan.force`` is False (nothing was pushed).
        GitHubError: a push or API failure (one line: what failed and what to do).
    """
    if plan.problems:
        raise ToolkitError(plan.problems[0])
    if not plan.gate.passed and not plan.force:
        raise GateRefused("; ".join(plan.gate.reasons) + " (--force opens it anyway)")
    if plan.github is None:  # pragma: no cover - a problem above says so
        raise ToolkitError("unknown GitHub repository: pass --github-repo OWNER/NAME")
    if not token:
        raise GitHubError(NO_TOKEN)
    client = client or GitHubClient(token, plan.api_url or DEFAULT_API_URL)
    if plan.bundle_import:
        import_bundle(repo, plan.bundle_import)
    target = parse_repo(plan.github, urlsplit(plan.web_url or "").hostname or "github.com")
    pushed = _push(repo, plan, token, force_push)
    try:
        return _open_or_update(client, target, plan, pushed)
    except GitHubError as exc:
        # The branch is on the remote already: say so, and that re-running finishes the job.
        raise GitHubError(
            f"{exc} (the branch {plan.branch} was pushed; run the same command again to open "
            "or update the pull request)",
            status=exc.status,
        ) from None


def _open_or_update(
    client: GitHubClient, target: GitHubRepo, plan: PullRequestPlan, pushed: list[PushRef]
) -> PullRequestResult:
    pull = client.find_pull(target, plan.branch, plan.base)
    created = pull is None
    if pull is None:
        try:
            pull = client.create_pull(
                target,
                branch=plan.branch,
                base=plan.base,
                title=plan.title,
                body=plan.body,
                draft=plan.draft,
            )
        except GitHubError as exc:
            # Opened by someone else between our look and our call: update that one.
            if exc.status != 422 or "already exists" not in str(exc):
                raise
            pull = client.find_pull(target, plan.branch, plan.base)
            if pull is None:
                raise
            created = False
    if not created:
        pull = client.update_pull(target, int(pull["number"]), title=plan.title, body=plan.body)
    number = int(pull["number"])
    client.add_labels(target, number, plan.labels)
    return PullRequestResult(
        number=number, url=str(pull.get("html_url", "")), created=created, pushed=pushed
    )


__all__ = [
    "DEFAULT_LABELS",
    "GateRefused",
    "PullRequestPlan",
    "PullRequestResult",
    "PushRef",
    "describe_plan",
    "plan_pull_request",
    "publish",
]
