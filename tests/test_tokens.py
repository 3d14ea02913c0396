"""Token counts that may be unknown: sums, means and how they read (toolkit.tokens)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from toolkit.known import add_known, sum_known
from toolkit.llm.usage import reported_usage
from toolkit.tokens import TokenTally, describe_in_out, describe_tokens, estimate_tokens


def test_a_total_with_an_unknown_part_is_unknown() -> None:
    assert add_known(3, 4) == 7 and add_known(3, None) is None and add_known(None, 0) is None
    assert sum_known([], 0) == 0 and sum_known([1, 2], 0) == 3
    assert sum_known([1, None, 2], 0) is None and sum_known([0.5, 0.25], 0.0) == 0.75


def test_a_tally_sums_and_averages_over_the_reported_units_only() -> None:
    tally = TokenTally.of([(100, 10), (None, None), (300, 30), (5, None)])
    assert (tally.tokens_in, tally.tokens_out, tally.reported, tally.unreported) == (400, 40, 2, 2)
    assert tally.mean == 220  # not (440 / 4 = 110): the unreported units are no zeros
    assert tally.describe("tasks") == "440 (2 of 4 tasks unreported)"
    assert tally.describe("tasks", mean=True) == "220 (2 of 4 tasks unreported)"
    silent = TokenTally.of([(None, None)] * 3)
    assert silent.mean is None and silent.describe("calls") == "unknown (3 of 3 calls unreported)"
    assert TokenTally.of([]).describe("calls") == "0"
    assert TokenTally.of([(1, 2)]).describe("calls") == "3"


def test_descriptions_name_the_units_left_out() -> None:
    assert describe_tokens(2766.4, 3, 100, "tasks") == "2,766 (3 of 100 tasks unreported)"
    assert describe_tokens(2766.4, 0, 100, "tasks") == "2,766"
    assert describe_in_out(1200, 80, 0, 5, "tasks") == "in 1,200 / out 80"
    assert describe_in_out(1200, 80, 1, 5, "tasks") == "in 1,200 / out 80 (1 of 5 tasks unreported)"
    assert (
        describe_in_out(0, 0, 5, 5, "tasks") == "in unknown / out unknown (5 of 5 tasks unreported)"
    )


def test_the_estimate_is_characters_over_four() -> None:
    assert (
        estimate_tokens("") == 1 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    )


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (None, (None, None)),  # no usage object at all
        ({"prompt_tokens": 0, "completion_tokens": 0}, (None, None)),  # litellm's placeholder
        ({"prompt_tokens": None, "completion_tokens": None}, (None, None)),
        ({"prompt_tokens": 12, "completion_tokens": 0}, (12, 0)),  # a measured empty reply
        ({"prompt_tokens": 12, "completion_tokens": 5}, (12, 5)),
        ({"prompt_tokens": 0, "completion_tokens": 5}, (None, 5)),  # only the reply counted
        ({"prompt_tokens": "junk", "completion_tokens": -1}, (None, None)),
    ],
)
def test_usage_of_zeros_is_no_measurement(usage: dict | None, expected: tuple) -> None:
    """litellm answers a server that sent no usage with zeros; a prompt of 0 tokens is not
    a count (every chat request has its template's tokens)."""
    response = SimpleNamespace(usage=None if usage is None else SimpleNamespace(**usage))
    assert reported_usage(response) == expected
