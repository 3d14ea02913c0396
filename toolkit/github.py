"""A small GitHub REST client: the pull requests of ``trace2skill pr``, nothing more.

The token comes from the environment (``TRACE2SKILL_PR_TOKEN``, else ``GH_TOKEN``, else
``GITHUB_TOKEN``: :data:`TOKEN_VARIABLES`); it is sent only in
the ``Authorization`` header, never printed, logged or stored, and replaced by ``***`` in any
message that might echo it. The API base is configurable: ``https://api.github.com`` for
github.com, ``https://HOST/api/v3`` for GitHub Enterprise Server (derived from the remote URL),
or any URL (``--api-url``, ``$GITHUB_API_URL``; tests point it at a loopback server).

Every failure is one :class:`GitHubError` line that says what to do: a missing token, a token
GitHub rejects (401), one without the permission (403), a repository the token cannot see
(404), a request GitHub refuses (422, with GitHub's own reasons), rate limits (429, or 403 with
``x-ratelimit-remaining: 0``; ``retry-after`` and ``x-ratelimit-reset`` are honoured up to
``max_wait`` seconds), server errors (5xx, retried with backoff) and network failures.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from toolkit.errors import ToolkitError

DEFAULT_API_URL = "https://api.github.com"
#: Where the token is read from, first set wins. The toolkit's own variable, then gh's order
#: (GH_TOKEN before GITHUB_TOKEN): a job-level GITHUB_TOKEN must not override a PAT given in
#: GH_TOKEN for one step.
TOKEN_VARIABLES = ("TRACE2SKILL_PR_TOKEN", "GH_TOKEN", "GITHUB_TOKEN")
API_VERSION = "2022-11-28"
#: The variables as messages name them.
TOKEN_NAMES = f"{', '.join(TOKEN_VARIABLES[:-1])} or {TOKEN_VARIABLES[-1]}"
NO_TOKEN = f"no GitHub token: set {TOKEN_NAMES} (a token that may write contents and pull requests)"


class GitHubError(ToolkitError):
    """A GitHub API call or a push failed; the message says why and what to do."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GitHubRepo:
    """A repository on a GitHub host: ``host``/``owner``/``name``."""

    host: str
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"

    @property
    def web_url(self) -> str:
        """The repository's page, e.g. ``https://github.com/o/r``."""
        return f"https://{self.host}/{self.owner}/{self.name}"

    @property
    def api_url(self) -> str:
        """The REST API base of the host (github.com or GitHub Enterprise Server)."""
        if self.host in ("github.com", "www.github.com"):
            return DEFAULT_API_URL
        return f"https://{self.host}/api/v3"


_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")
_NAME_OK = re.compile(r"^[A-Za-z0-9._-]+$")


def parse_repo(full_name: str, host: str = "github.com") -> GitHubRepo:
    """``owner/name`` as a :class:`GitHubRepo` on ``host``.

    Raises:
        GitHubError: not of the form ``owner/name``.
    """
    owner, _, name = full_name.strip().partition("/")
    if not (_NAME_OK.match(owner) and _NAME_OK.match(name)):
        raise GitHubError(f"{full_name!r} is not a repository name: use OWNER/NAME")
    return GitHubRepo(host, owner, name)


def parse_remote_url(url: str) -> GitHubRepo | None:
    """The GitHub repository a git remote URL points at, or None (a local path, no owner/name).

    Understands ``https://HOST/OWNER/NAME(.git)``, ``ssh://git@HOST[:port]/OWNER/NAME`` and
    ``git@HOST:OWNER/NAME.git``, for github.com and GitHub Enterprise hosts alike.
    """
    url = url.strip()
    if "://" in url:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("https", "http", "ssh", "git") or not parsed.hostname:
            return None
        host, path = parsed.hostname, parsed.path
    else:
        match = _SCP_LIKE.match(url)
        if match is None or os.path.exists(url):
            return None
        host, path = match["host"], match["path"]
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) != 2:
        return None
    owner, name = parts[0], parts[1].removesuffix(".git")
    if not (_NAME_OK.match(owner) and _NAME_OK.match(name)):
        return None
    return GitHubRepo(host.lower(), owner, name)


def token_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The token in the first of :data:`TOKEN_VARIABLES` that is set (None when none is)."""
    env = os.environ if env is None else env
    for name in TOKEN_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _reset_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait before retrying a rate-limited request, from its headers."""
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return None
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now)
        except ValueError:
            return None
    return None


def _api_message(body: bytes) -> str:
    """GitHub's error message and its per-field reasons, in one line."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return " ".join(text.split())[:200]
    if not isinstance(data, dict):
        return ""
    parts = [str(data.get("message", "")).strip()]
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            detail = error.get("message") or " ".join(
                str(error[k]) for k in ("resource", "field", "code") if error.get(k)
            )
            parts.append(str(detail))
        else:
            parts.append(str(error))
    return "; ".join(p for p in parts if p)


@dataclass(frozen=True)
class Response:
    """A successful API answer."""

    status: int
    data: Any


class GitHubClient:
    """Authenticated calls to one GitHub REST API base.

    Args:
        token: the token (sent as ``Authorization: Bearer``; never shown).
        api_url: the API base (default ``https://api.github.com``).
        timeout: seconds per request.
        retries: extra tries after a rate limit, a 5xx answer or a network failure.
        max_wait: the longest wait for a rate limit to reset; longer resets fail at once.
        sleep: how to wait (tests pass a recorder).
    """

    def __init__(
        self,
        token: str,
        api_url: str = DEFAULT_API_URL,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise GitHubError(NO_TOKEN)
        self._token = token
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.max_wait = max_wait
        self._sleep = sleep

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        what: str | None = None,
    ) -> Response:
        """Send one API request (with retries) and return the decoded JSON answer.

        ``what`` names the action in error messages (e.g. ``open the pull request``).

        Raises:
            GitHubError: one line per failure kind (see the module docstring).
        """
        url = self.api_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        what = what or f"{method} {path}"
        delay = 1.0
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            request = urllib.request.Request(url, data=data, method=method)
            request.add_header("Authorization", f"Bearer {self._token}")
            request.add_header("Accept", "application/vnd.github+json")
            request.add_header("X-GitHub-Api-Version", API_VERSION)
            request.add_header("User-Agent", "trace2skill")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    raw = answer.read()
                    return Response(answer.status, json.loads(raw) if raw.strip() else None)
            except urllib.error.HTTPError as exc:
                headers = {k.lower(): v for k, v in exc.headers.items()}
                raw = exc.read()
                wait = self._retry_wait(exc.code, headers, raw, what)
                if wait is None or last:
                    raise self._error(exc.code, headers, raw, what) from None
                self._sleep(wait if wait > 0 else delay)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if last:
                    reason = getattr(exc, "reason", exc)
                    raise GitHubError(
                        self._redact(
                            f"cannot reach {self.api_url} to {what}: {reason} "
                            f"(tried {self.retries + 1} times; check the network or --api-url)"
                        )
                    ) from None
                self._sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_wait(
        self, status: int, headers: Mapping[str, str], raw: bytes, what: str
    ) -> float | None:
        """How long to wait before retrying this answer; None when it must not be retried."""
        if status >= 500:
            return 0.0  # the caller's exponential delay
        if status == 429 or (status == 403 and self._rate_limited(headers, raw)):
            wait = _reset_wait(headers, time.time())
            if wait is None:
                return 0.0
            return wait if wait <= self.max_wait else None
        return None

    @staticmethod
    def _rate_limited(headers: Mapping[str, str], raw: bytes) -> bool:
        return (
            headers.get("x-ratelimit-remaining") == "0"
            or "retry-after" in headers
            or b"rate limit" in raw.lower()
        )

    def _error(self, status: int, headers: Mapping[str, str], raw: bytes, what: str) -> GitHubError:
        detail = _api_message(raw)
        said = f" ({status}: {detail})" if detail else f" ({status})"
        if status == 401:
            text = (
                f"GitHub rejected the token{said}: set a valid, unexpired token in "
                f"{TOKEN_NAMES} (the first one set is used)"
            )
        elif status == 429 or (status == 403 and self._rate_limited(headers, raw)):
            wait = _reset_wait(headers, time.time())
            when = f"; it resets in {wait:.0f} s" if wait is not None else ""
            text = f"GitHub rate limit hit while trying to {what}{said}{when}: try again later"
        elif status == 403:
            text = (
                f"the token may not {what}{said}: it needs 'contents: write' and "
                "'pull-requests: write' on the repository"
            )
        elif status == 404:
            text = (
                f"GitHub found nothing to {what}{said}: the repository does not exist or the "
                "token cannot see it (private repositories answer 404 to tokens without access)"
            )
        elif status == 422:
            text = f"GitHub refused to {what}{said}"
        elif status >= 500:
            text = f"GitHub failed to {what}{said} after {self.retries + 1} tries: try again later"
        else:
            text = f"GitHub could not {what}{said}"
        return GitHubError(self._redact(text), status)

    # ------------------------------------------------------------------ pull requests

    def find_pull(self, repo: GitHubRepo, branch: str, base: str) -> dict[str, Any] | None:
        """The open pull request from ``branch`` into ``base``, or None."""
        answer = self.request(
            "GET",
            f"/repos/{repo.full_name}/pulls",
            params={"head": f"{repo.owner}:{branch}", "base": base, "state": "open"},
            what=f"list the pull requests of {repo.full_name}",
        )
        pulls = answer.data if isinstance(answer.data, list) else []
        return pulls[0] if pulls else None

    def create_pull(
        self, repo: GitHubRepo, *, branch: str, base: str, title: str, body: str, draft: bool
    ) -> dict[str, Any]:
        """Open a pull request from ``branch`` into ``base``."""
        payload = {"title": title, "head": branch, "base": base, "body": body, "draft": draft}
        return self.request(
            "POST",
            f"/repos/{repo.full_name}/pulls",
            payload,
            what=f"open a pull request on {repo.full_name}",
        ).data

    def update_pull(
        self, repo: GitHubRepo, number: int, *, title: str, body: str
    ) -> dict[str, Any]:
        """Replace the title and body of pull request ``number``."""
        return self.request(
            "PATCH",
            f"/repos/{repo.full_name}/pulls/{number}",
            {"title": title, "body": body},
            what=f"update pull request #{number}",
        ).data

    def add_labels(self, repo: GitHubRepo, number: int, labels: list[str]) -> None:
        """Add labels to pull request ``number`` (GitHub creates labels it does not know)."""
        if labels:
            self.request(
                "POST",
                f"/repos/{repo.full_name}/issues/{number}/labels",
                {"labels": labels},
                what=f"label pull request #{number}",
            )


__all__ = [
    "DEFAULT_API_URL",
    "NO_TOKEN",
    "TOKEN_NAMES",
    "TOKEN_VARIABLES",
    "GitHubClient",
    "GitHubError",
    "GitHubRepo",
    "Response",
    "parse_remote_url",
    "parse_repo",
    "token_from_env",
]
