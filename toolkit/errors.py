"""Errors a user can act on.

Every exception raised for a user mistake (bad input, missing file, invalid patch) derives
from :class:`ToolkitError`. The CLI prints its message as one line and exits non-zero; any
other exception is a bug and shows a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


def validation_details(exc: ValidationError) -> list[str]:
    """Every problem of a pydantic validation error, one line each (``field.path: why``)."""
    out = []
    for err in exc.errors():
        if err["type"] == "json_invalid":
            out.append(f"not valid JSON ({err['msg']})")
            continue
        loc = ".".join(str(p) for p in err["loc"])
        out.append(f"{loc or 'record'}: {err['msg']}")
    return out


class ToolkitError(Exception):
    """Base class of errors caused by input the user can fix."""

    #: The CLI's exit status for this error.
    exit_code: int = 1
    #: What the CLI prints before the message. An outcome that is no error (the PR gate
    #: refused, nothing was learned) says so, so a green CI log shows no ``Error:`` line.
    label: str = "Error"


class SkillError(ToolkitError):
    """A skill folder cannot be loaded (missing SKILL.md, bad frontmatter, bad encoding)."""


class SectionLookupError(SkillError):
    """A section name matches no section, or more than one.

    ``reason`` is ``section-missing`` or ``section-ambiguous`` (patch rejection codes).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PatchError(ToolkitError):
    """A patch file cannot be loaded or is malformed."""


class PatchRejected(PatchError):
    """A patch did not apply cleanly (strict mode, or writing a rejected result)."""


class RepoError(ToolkitError):
    """A git repository is unusable for the requested operation."""


class LLMError(ToolkitError):
    """An LLM call failed permanently (auth, bad request, retries exhausted).

    ``tokens_in`` / ``tokens_out``: what the failed call's requests used (a reply that did not
    validate still cost its tokens), set by the gateway; None when the provider did not
    report them (:mod:`toolkit.tokens`). ``cost_usd``: what those requests cost; None when a
    reply could not be priced (:mod:`toolkit.cost`).
    """

    tokens_in: int | None = 0
    tokens_out: int | None = 0
    cost_usd: float | None = 0.0


class ContextWindowError(LLMError):
    """The prompt and the reply's room no longer fit the model's context window (the
    conversation, not the model settings, is at fault: retrying it fails the same way)."""


class ModelInstallError(ToolkitError):
    """The embedded model could not be installed or verified."""


class SandboxError(ToolkitError):
    """The code sandbox cannot start or was used wrongly (bad task files, closed session)."""


class ToolkitNotice(UserWarning):
    """Something the user should know that is not an error (the CLI prints ``Note: ...``).

    Raised with :func:`warnings.warn`, so library callers can filter or escalate it.
    """
