"""Token counts that may be unknown, and the sums and means taken over them (pure).

A provider that reports no usage (an OpenAI-compatible server that sends no ``usage``, an
imported harness that kept none) leaves a call's token counts unknown. They follow
:mod:`toolkit.known`'s rule: one unit's count is ``int | None`` (a total with an unknown part
is unknown: :func:`toolkit.known.add_known`), and sums and means are over the units that
reported, saying how many did not (:class:`TokenTally`, :func:`describe_tokens`): ``2,766 (3
of 100 tasks unreported)``, never a silent 0. A cache hit spent 0 tokens, measured.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from toolkit.known import unreported_note

#: Characters per token of the estimate (:func:`estimate_tokens`): about what the tokenizers
#: of common chat models give for English prose and code.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """A rough token count of ``text`` (characters / :data:`CHARS_PER_TOKEN`, at least 1).

    Only for limits that must go on counting when a provider reports nothing (a token budget);
    never stored as a count.
    """
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def format_count(value: float | None) -> str:
    """One count or mean as shown: ``1,234``, or ``unknown``."""
    return "unknown" if value is None else f"{value:,.0f}"


def describe_tokens(value: float | None, unreported: int, units: int, noun: str) -> str:
    """A sum or mean of token counts as a user reads it, with the units it leaves out.

    ``value`` is taken over the reported units only (None when there were none); ``noun``
    names the units (``tasks``, ``calls``). Gives ``2,766``, ``2,766 (3 of 100 tasks
    unreported)`` or ``unknown (100 of 100 tasks unreported)``.
    """
    return format_count(value) + unreported_note(unreported, units, noun)


def describe_in_out(tokens_in: int, tokens_out: int, unreported: int, units: int, noun: str) -> str:
    """Prompt and completion sums over the reported units, with the units they leave out:
    ``in 1,200 / out 80``, ``in 1,200 / out 80 (3 of 10 tasks unreported)``, or ``in
    unknown / out unknown (10 of 10 tasks unreported)`` when no unit reported."""
    none = unreported > 0 and unreported >= units
    shown_in, shown_out = (None, None) if none else (tokens_in, tokens_out)
    return f"in {format_count(shown_in)} / out {format_count(shown_out)}" + unreported_note(
        unreported, units, noun
    )


class TokenTally(BaseModel):
    """Prompt and completion tokens summed over the units that reported both, with a count
    of those that did not (left out of the sums, so a mean over them is not pulled down)."""

    model_config = ConfigDict(frozen=True)

    tokens_in: int = Field(0, description="Prompt tokens of the reported units.")
    tokens_out: int = Field(0, description="Completion tokens of the reported units.")
    reported: int = Field(0, description="Units whose counts are known.")
    unreported: int = Field(0, description="Units with an unknown count, left out of the sums.")

    @classmethod
    def of(cls, counts: Iterable[tuple[int | None, int | None]]) -> TokenTally:
        """The tally of ``(tokens_in, tokens_out)`` pairs; a pair with either count unknown
        is unreported as a whole (in and out stay sums over the same units)."""
        t_in = t_out = reported = unreported = 0
        for count_in, count_out in counts:
            if count_in is None or count_out is None:
                unreported += 1
                continue
            t_in, t_out, reported = t_in + count_in, t_out + count_out, reported + 1
        return cls(tokens_in=t_in, tokens_out=t_out, reported=reported, unreported=unreported)

    @property
    def total(self) -> int:
        """Prompt + completion tokens of the reported units."""
        return self.tokens_in + self.tokens_out

    @property
    def units(self) -> int:
        """Units counted, reported or not."""
        return self.reported + self.unreported

    @property
    def mean(self) -> float | None:
        """Mean prompt + completion tokens per reported unit; None when none reported."""
        return self.total / self.reported if self.reported else None

    def describe(self, noun: str, *, mean: bool = False) -> str:
        """The total (or the mean per unit) with the units left out (:func:`describe_tokens`)."""
        # Nothing reported: the total is unknown, not 0 (with no units at all it is 0).
        total = self.total if self.reported or not self.unreported else None
        value = self.mean if mean else total
        return describe_tokens(value, self.unreported, self.units, noun)
