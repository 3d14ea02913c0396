"""The GitHub REST client against a loopback server that answers as the API does."""

from __future__ import annotations

import socket

import pytest

from tests.fake_github import FakeGitHub, serve
from toolkit.github import (
    GitHubClient,
    GitHubError,
    GitHubRepo,
    parse_remote_url,
    parse_repo,
    token_from_env,
)

TOKEN = "ghp_secretTOKEN1234567890"
REPO = GitHubRepo("github.com", "o", "r")


@pytest.fixture
def api():
    state = FakeGitHub()
    server, url = serve(state)
    waits: list[float] = []
    client = GitHubClient(TOKEN, url, retries=2, max_wait=30, sleep=waits.append)
    yield state, client, waits
    server.shutdown()
    server.server_close()


def test_create_find_update_and_label(api):
    state, client, _ = api
    assert client.find_pull(REPO, "t2s/r1/result", "main") is None
    pull = client.create_pull(
        REPO, branch="t2s/r1/result", base="main", title="T", body="B", draft=True
    )
    assert pull["number"] == 1
    assert client.find_pull(REPO, "t2s/r1/result", "main")["number"] == 1
    client.update_pull(REPO, 1, title="T2", body="B2")
    client.add_labels(REPO, 1, ["trace2skill"])
    assert state.pulls[0]["title"] == "T2" and state.labels == {1: ["trace2skill"]}
    assert state.calls() == [
        "GET /repos/o/r/pulls",
        "POST /repos/o/r/pulls",
        "GET /repos/o/r/pulls",
        "PATCH /repos/o/r/pulls/1",
        "POST /repos/o/r/issues/1/labels",
    ]
    first = state.requests[0]
    assert first.query == {"head": ["o:t2s/r1/result"], "base": ["main"], "state": ["open"]}
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert first.headers["accept"] == "application/vnd.github+json"
    assert state.requests[1].body == {
        "title": "T",
        "head": "t2s/r1/result",
        "base": "main",
        "body": "B",
        "draft": True,
    }


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (
            401,
            {"message": "Bad credentials"},
            {},
            "GitHub rejected the token (401: Bad credentials)",
        ),
        (
            403,
            {"message": "Resource not accessible by integration"},
            {},
            "the token may not open a pull request on o/r (403: Resource not accessible",
        ),
        (404, {"message": "Not Found"}, {}, "the repository does not exist or the token cannot"),
        (
            422,
            {
                "message": "Validation Failed",
                "errors": [{"message": "A pull request already exists for o:t2s/r1/result."}],
            },
            {},
            "GitHub refused to open a pull request on o/r (422: Validation Failed; A pull "
            "request already exists",
        ),
        (
            403,
            {"message": "API rate limit exceeded"},
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "9999999999"},
            "GitHub rate limit hit while trying to open a pull request on o/r",
        ),
    ],
)
def test_errors_are_one_clear_line(api, status, body, headers, expected):
    state, client, waits = api
    state.script("POST", "/repos/o/r/pulls", status, body, headers)
    with pytest.raises(GitHubError) as info:
        client.create_pull(REPO, branch="b", base="main", title="T", body="B", draft=False)
    message = str(info.value)
    assert expected in message and "\n" not in message and TOKEN not in message
    assert info.value.status == status
    assert waits == []  # none of these is retried (a reset hours away is not waited for)
    assert len(state.requests) == 1


def test_rate_limit_honours_retry_after(api):
    state, client, waits = api
    state.script("GET", "/repos/o/r/pulls", 429, {"message": "slow down"}, {"Retry-After": "7"})
    state.script(
        "GET",
        "/repos/o/r/pulls",
        403,
        {"message": "You have exceeded a secondary rate limit"},
        {"Retry-After": "3"},
    )
    assert client.find_pull(REPO, "b", "main") is None
    assert waits == [7.0, 3.0]
    assert len(state.requests) == 3


def test_rate_limit_longer_than_max_wait_fails_at_once(api):
    state, client, waits = api
    state.script("GET", "/repos/o/r/pulls", 429, {"message": "slow down"}, {"Retry-After": "600"})
    with pytest.raises(GitHubError, match="rate limit hit .* it resets in 600 s"):
        client.find_pull(REPO, "b", "main")
    assert waits == []


def test_server_errors_are_retried_with_backoff_then_reported(api):
    state, client, waits = api
    state.script("GET", "/repos/o/r/pulls", 502, {"message": "Bad Gateway"})
    state.script("GET", "/repos/o/r/pulls", 503, None)
    assert client.find_pull(REPO, "b", "main") is None
    assert waits == [1.0, 2.0]
    for _ in range(3):
        state.script("GET", "/repos/o/r/pulls", 500, {"message": "boom"})
    with pytest.raises(GitHubError, match=r"GitHub failed to list .* \(500: boom\) after 3 tries"):
        client.find_pull(REPO, "b", "main")


def test_token_echoed_by_the_server_is_redacted(api):
    state, client, _ = api
    state.script("POST", "/repos/o/r/pulls", 422, {"message": f"bad head {TOKEN}"})
    with pytest.raises(GitHubError) as info:
        client.create_pull(REPO, branch="b", base="main", title="T", body="B", draft=False)
    assert TOKEN not in str(info.value) and "***" in str(info.value)


def test_network_failure_is_one_line():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    waits: list[float] = []
    client = GitHubClient(TOKEN, f"http://127.0.0.1:{port}", retries=1, sleep=waits.append)
    with pytest.raises(GitHubError, match=r"cannot reach http://127.0.0.1:\d+ to list .*2 times"):
        client.find_pull(REPO, "b", "main")
    assert waits == [1.0]


def test_no_token_is_refused():
    with pytest.raises(
        GitHubError, match="no GitHub token: set TRACE2SKILL_PR_TOKEN, GH_TOKEN or GITHUB_TOKEN"
    ):
        GitHubClient("")


def test_token_from_env_order():
    """As gh reads them: a job-level GITHUB_TOKEN must not override a PAT in GH_TOKEN."""
    assert token_from_env({"GITHUB_TOKEN": "a", "GH_TOKEN": "b"}) == "b"
    assert token_from_env({"GITHUB_TOKEN": "a", "GH_TOKEN": " "}) == "a"
    assert (
        token_from_env({"GITHUB_TOKEN": "a", "GH_TOKEN": "b", "TRACE2SKILL_PR_TOKEN": "c"}) == "c"
    )
    assert token_from_env({}) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/o/r.git", ("github.com", "o", "r", "https://api.github.com")),
        ("https://x-access-token@github.com/o/r", ("github.com", "o", "r", None)),
        ("git@github.com:o/r.git", ("github.com", "o", "r", None)),
        ("ssh://git@github.com:22/o/r.git", ("github.com", "o", "r", None)),
        (
            "https://ghe.example.com/team/skills.git",
            ("ghe.example.com", "team", "skills", "https://ghe.example.com/api/v3"),
        ),
        ("/srv/git/skills.git", None),
        ("file:///srv/git/skills.git", None),
        ("https://github.com/only-owner", None),
    ],
)
def test_parse_remote_url(url, expected):
    repo = parse_remote_url(url)
    if expected is None:
        assert repo is None
        return
    host, owner, name, api_url = expected
    assert (repo.host, repo.owner, repo.name) == (host, owner, name)
    if api_url:
        assert repo.api_url == api_url


def test_parse_repo():
    assert parse_repo("o/r").full_name == "o/r"
    with pytest.raises(GitHubError, match="use OWNER/NAME"):
        parse_repo("o")
