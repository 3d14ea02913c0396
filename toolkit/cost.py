"""Model costs in USD that may be unknown, and the sums taken over them (pure).

litellm prices a reply from its token usage and its price list. A custom OpenAI-compatible
server (``openai/my-model`` at an ``--api-base``) or a hosted model missing from the list has
no price, and a reply without usage has nothing to price (litellm would price its stand-in
zeros at $0). Such a cost is unknown, recorded as ``None`` and never shown as $0, by
:mod:`toolkit.known`'s rule: one unit's cost is ``float | None`` (a total with an unknown part
is unknown), and sums are over the priced units, saying how many were not (:class:`CostTally`):
``$0.0123 (3 of 10 calls unpriced)``. The embedded ``local/`` models and the ``fake/`` test
models are free, and a reply from the response cache made no request: those cost a real 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from toolkit.known import unreported_note

#: What a unit without a known cost is called in summaries: ``3 of 10 calls unpriced``.
UNPRICED = "unpriced"
#: Why a call can be unpriced, for the summaries that have room to say it once.
UNPRICED_WHY = "litellm has no price for the model, or the provider sent no usage"


def format_cost(value: float | None) -> str:
    """One cost as shown: ``$0.0123``, or ``unknown``."""
    return "unknown" if value is None else f"${value:.4f}"


def describe_cost(value: float | None, unpriced: int, units: int, noun: str) -> str:
    """A sum of costs as a user reads it, with the units it leaves out.

    ``value`` is taken over the priced units only (None when there were none); ``noun``
    names the units (``calls``, ``trajectories``). Gives ``$0.0123``, ``$0.0123 (3 of 10
    calls unpriced)`` or ``unknown (10 of 10 calls unpriced)``.
    """
    return format_cost(value) + unreported_note(unpriced, units, noun, UNPRICED)


class CostTally(BaseModel):
    """Costs summed over the units whose cost is known, with a count of those whose is not
    (left out of the sum rather than counted as $0)."""

    model_config = ConfigDict(frozen=True)

    cost_usd: float = Field(0.0, description="Cost of the priced units in USD.")
    priced: int = Field(0, description="Units whose cost is known.")
    unpriced: int = Field(0, description="Units with an unknown cost, left out of the sum.")

    @classmethod
    def of(cls, costs: Iterable[float | None]) -> CostTally:
        """The tally of ``costs`` (None: unknown)."""
        total, priced, unpriced = 0.0, 0, 0
        for cost in costs:
            if cost is None:
                unpriced += 1
            else:
                total, priced = total + cost, priced + 1
        return cls(cost_usd=total, priced=priced, unpriced=unpriced)

    @classmethod
    def from_sum(cls, cost_usd: float, units: int, unpriced: int) -> CostTally:
        """The tally of ``units`` whose priced ones cost ``cost_usd`` in all, ``unpriced`` of
        them unknown (a summary's stored figures, an index query's sums)."""
        return cls(cost_usd=cost_usd, priced=max(0, units - unpriced), unpriced=unpriced)

    @property
    def units(self) -> int:
        """Units counted, priced or not."""
        return self.priced + self.unpriced

    @property
    def total(self) -> float | None:
        """The priced units' cost; None when every unit is unpriced (with none at all: 0)."""
        return None if self.unpriced and not self.priced else self.cost_usd

    def describe(self, noun: str) -> str:
        """The total with the units left out (:func:`describe_cost`)."""
        return describe_cost(self.total, self.unpriced, self.units, noun)
