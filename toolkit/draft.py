"""Creation: the author model drafts a first skill S0 (the paper's Creation setting).

The author model reads the suite's task description (:meth:`toolkit.tasks.Suite.describe`)
and a few seeded questions of the evolve split as the agent sees them
(:meth:`~toolkit.tasks.Suite.summarise`: never their answers or golds), and replies with one
bounded JSON object (:class:`DraftReply`). The code, not the model, writes SKILL.md from it
in the Agent Skills format: front matter ``name`` (the folder's name) and ``description``,
a title, an overview and the sections. The result must pass the toolkit's own skill
validation; a reply that does not (or one the gateway could not parse: cut off at
``max_tokens``, malformed) gets one repair try, then a :class:`DraftError` in one line.

Two callers: ``trace2skill skill draft`` writes the draft into a new folder
(:func:`write_draft`), and ``evolve --create`` commits it as ``t2s/<run>/base`` on top of the
user's HEAD without touching their branch or working tree (:func:`create_base`), with a copy
in ``runs/<run>/draft/``. The call goes through the gateway: response cache, retries and the
calls log like every other model call.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from skills_ref.validator import validate_metadata

from toolkit.atomic import write_atomic
from toolkit.errors import LLMError, ToolkitError
from toolkit.skill import SKILL_MD, Issue, Skill, fence_state_after, validate_skill

if TYPE_CHECKING:
    from toolkit.llm.config import LLMConfig
    from toolkit.llm.gateway import Completion, Gateway
    from toolkit.repo import SkillRepo
    from toolkit.tasks import Suite, Task

DRAFT_SCHEMA_VERSION = 1
#: The run folder's copy of the draft: ``runs/<run>/draft/SKILL.md`` and ``draft.json``.
DRAFT_DIR = "draft"
DRAFT_INFO = "draft.json"
DEFAULT_EXAMPLES = 5
MAX_EXAMPLES = 20
#: Characters of one example task as shown (the agent's own view of it, cut).
EXAMPLE_CHARS = 900
#: Room for the reply: the schema's bounds allow ~8,400 characters (~2,500 tokens), and a
#: small model's constrained JSON that stops at max_tokens is cut, not short.
MAX_TOKENS = 4096
TEMPERATURE = 0.7

#: The first words of the author's system prompt (fake models tell the role by them).
SYSTEM_MARK = "You write the first draft of an agent skill"

_SYSTEM = f"""{SYSTEM_MARK}: the instructions an AI agent reads before it \
solves a task of one family. The agent runs Python code on the task's files in its working \
directory, then submits its answer. The skill is general: it teaches how to solve any task of \
the family (a workflow, methods, checks, pitfalls, the answer format), not the examples.

Reply with one JSON object:
- description: one to three sentences on what the skill does and when to use it;
- title: a short title;
- overview: two or three sentences;
- sections: 2 to 6, each a short heading (no '#') and a markdown body, e.g. Workflow (numbered \
steps), Methods (short python snippets in ```python fences), Answer format, Pitfalls.
Never solve the example tasks and never write their answers, numbers or names into the skill: \
they only show what the tasks look like."""


class DraftError(ToolkitError):
    """A skill cannot be drafted as asked (bad name, existing folder, no valid draft)."""


class DraftSection(BaseModel):
    """One section of the draft: a heading and its markdown body."""

    heading: str = Field(min_length=1, max_length=80, description="Heading text, without '#'.")
    body: str = Field(min_length=1, max_length=1000, description="Markdown body.")


class DraftReply(BaseModel):
    """The author model's reply (every string and list bounded: llama.cpp's grammar keeps a
    reply inside them, and a bound over 1000 characters makes it refuse the grammar)."""

    description: str = Field(
        min_length=1, max_length=1000, description="What the skill does and when to use it."
    )
    title: str = Field(min_length=1, max_length=80, description="The skill's title.")
    overview: str = Field(max_length=600, description="Two or three sentences.")
    sections: list[DraftSection] = Field(min_length=2, max_length=6)


class Draft(BaseModel):
    """A drafted SKILL.md and how it was made (``draft.json`` holds all but the text)."""

    schema_version: int = DRAFT_SCHEMA_VERSION
    name: str = Field(description="The skill's name: its folder's.")
    text: str = Field(description="SKILL.md as written.")
    model: str = Field(description="The author model.")
    suite: str
    split: str = Field(description="Split the example questions came from.")
    seed: int
    examples: list[str] = Field(description="Ids of the tasks shown (questions only).")
    repaired: bool = Field(False, description="The one repair try was needed.")
    calls: int = Field(1, description="Model calls made (the gateway's repair round aside).")
    warnings: list[str] = Field(default_factory=list, description="Validation warnings.")


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def folder_name(folder: str | Path) -> str:
    """The name a skill in ``folder`` must have (its last path part, ``..`` resolved)."""
    return Path(os.path.abspath(folder)).name


def check_skill_name(name: str) -> None:
    """Refuse a name the Agent Skills spec does not allow (the folder's name is the skill's).

    Raises:
        DraftError: in one line, the spec's reason first.
    """
    problems = validate_metadata({"name": name, "description": "-"}, Path(name))
    if problems:
        raise DraftError(
            f"cannot create a skill named {name!r}: {problems[0]} (a skill's name is its "
            "folder's name: lowercase letters, digits and single hyphens, e.g. table-qa)"
        )


def check_target(folder: Path, *, force: bool = False) -> None:
    """Refuse to draft into ``folder``: an invalid name, a file, or an existing folder
    (unless ``force``: its SKILL.md is then replaced, its other files stay).

    Raises:
        DraftError: in one line.
    """
    check_skill_name(folder_name(folder))
    if folder.exists() and not folder.is_dir():
        raise DraftError(f"{folder} is a file: give the folder of the skill to create")
    if folder.is_dir() and not force:
        raise DraftError(
            f"{folder} exists already: choose a new folder, or pass --force to replace its "
            f"{SKILL_MD} (its other files stay)"
        )


def nearest_existing(path: Path) -> Path:
    """``path``, or its nearest ancestor that exists (where a new folder's repository is
    found from)."""
    current = Path(path)
    while not current.exists() and current.parent != current:
        current = current.parent
    return current


# ---------------------------------------------------------------------------------------------
# The prompt and the reply
# ---------------------------------------------------------------------------------------------


def example_tasks(
    suite: Suite, split: str, examples: int, seed: int, limit: int | None = None
) -> list[Task]:
    """``examples`` tasks of ``split`` drawn with ``seed`` (from its seeded subset of
    ``limit``: the tasks an evolution learns from).

    Raises:
        TaskError: unknown split; DraftError: the split is empty.
    """
    from toolkit.tasks.base import seeded_subset

    pool = suite.load(split, limit=limit, seed=seed).tasks
    if not pool:
        raise DraftError(
            f"suite {suite.name!r} has no task in split {split!r}: the author model needs a "
            "few questions to draft from"
        )
    return seeded_subset(pool, examples, seed)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15].rstrip() + " ...[truncated]"


def draft_messages(name: str, suite: Suite, tasks: list[Task]) -> list[dict[str, str]]:
    """The author's messages: the skill's name, the suite's description and ``tasks`` as the
    agent sees them (:meth:`~toolkit.tasks.Suite.summarise`: no answer, no gold)."""
    shown = "\n".join(
        f"--- example {i} ---\n{_cut(suite.summarise(task), EXAMPLE_CHARS)}"
        for i, task in enumerate(tasks, start=1)
    )
    user = (
        f"SKILL NAME: {name}\n\n"
        f"TASK FAMILY ({suite.name}): {suite.describe()}\n\n"
        f"EXAMPLE TASKS ({len(tasks)}, as the agent sees them; their answers are not shown):\n"
        f"{shown}\n\n"
        "Reply with one JSON object: description, title, overview, sections."
    )
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _heading(text: str) -> str:
    return _one_line(text).lstrip("#").strip() or "Notes"


def _body(text: str) -> str:
    """A body as markdown: line ends unified, trailing spaces and extra blank lines gone, and
    a code fence left open closed (it would swallow every later section)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    state = fence_state_after(line + "\n" for line in body.split("\n"))
    if state is not None:
        body += "\n" + state[0] * max(3, state[1])
    return body


def render_skill_md(name: str, reply: DraftReply) -> str:
    """SKILL.md from the author's reply: front matter (``name``, the description as one
    quoted line), ``# title``, the overview, then one ``##`` section per reply section."""
    parts = [
        "---",
        f"name: {name}",
        f"description: {json.dumps(_one_line(reply.description), ensure_ascii=False)}",
        "---",
        "",
        f"# {_heading(reply.title)}",
        "",
    ]
    overview = _body(reply.overview)
    if overview:
        parts += [overview, ""]
    for section in reply.sections:
        parts += [f"## {_heading(section.heading)}", "", _body(section.body), ""]
    return "\n".join(parts)


def draft_issues(name: str, text: str) -> list[Issue]:
    """The toolkit's own validation of a SKILL.md for the folder ``name``."""
    return validate_skill(Skill.from_files(name, {SKILL_MD: text}))


def _repair_request(errors: list[Issue]) -> str:
    listed = "\n".join(f"- {issue.message}" for issue in errors[:8])
    return (
        f"The {SKILL_MD} made from your reply does not validate:\n{listed}\n"
        "Reply with the whole JSON object again, with these problems fixed."
    )


# ---------------------------------------------------------------------------------------------
# Drafting
# ---------------------------------------------------------------------------------------------


def _ask(
    gateway: Gateway,
    messages: list[dict[str, str]],
    model: str,
    name: str,
    *,
    seed: int,
    temperature: float,
    max_tokens: int,
) -> Completion:
    from toolkit.llm.gateway import AFTER_REPAIR

    try:
        return gateway.complete_full(
            messages,
            model,
            DraftReply,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
        )
    except LLMError as exc:
        if AFTER_REPAIR not in str(exc):
            raise  # no reply at all (a server down, a refused key): the gateway's own line
        raise DraftError(
            f"the author model wrote no valid draft of {name} after one repair try: {exc}; "
            "nothing was written"
        ) from None


def draft_skill(
    name: str,
    suite: Suite,
    *,
    llm_config: LLMConfig,
    model: str | None = None,
    split: str = "train",
    examples: int = DEFAULT_EXAMPLES,
    seed: int = 0,
    limit: int | None = None,
    temperature: float = TEMPERATURE,
    max_tokens: int = MAX_TOKENS,
) -> Draft:
    """Draft SKILL.md for a skill named ``name`` (writes nothing but the calls log and the
    response cache of ``llm_config``).

    Args:
        name: the skill's (and its folder's) name.
        suite: the tasks the skill is for: its description and ``examples`` questions of
            ``split`` (seeded by ``seed``, from the subset of ``limit``) are shown.
        llm_config: gateway settings; ``model`` (default: its model) is the author.

    Raises:
        DraftError: an invalid name, an empty split, or no valid draft after one repair try
            (a reply that fails validation twice, or JSON the gateway could not repair).
        LLMError: the model could not be called.
    """
    from toolkit.llm.gateway import Gateway

    check_skill_name(name)
    if not 1 <= examples <= MAX_EXAMPLES:
        raise DraftError(f"examples must be 1 to {MAX_EXAMPLES}, got {examples}")
    tasks = example_tasks(suite, split, examples, seed, limit)
    messages = draft_messages(name, suite, tasks)
    author = model or llm_config.model
    options: dict[str, Any] = {"seed": seed, "temperature": temperature, "max_tokens": max_tokens}
    gateway = Gateway(llm_config)
    try:
        completion = _ask(gateway, messages, author, name, **options)
        calls, repaired = 1, completion.repair_rounds > 0
        text = render_skill_md(name, completion.value)
        errors = [i for i in draft_issues(name, text) if i.severity == "error"]
        if errors and not repaired:  # the one repair try, unless the gateway made it
            again = [
                *messages,
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": _repair_request(errors)},
            ]
            completion = _ask(gateway, again, author, name, **options)
            calls, repaired = 2, True
            text = render_skill_md(name, completion.value)
            errors = [i for i in draft_issues(name, text) if i.severity == "error"]
    finally:
        gateway.close()
    if errors:
        count = f"{len(errors)} error{'s' * (len(errors) > 1)}"
        raise DraftError(
            f"the author model's draft of {name} does not validate after one repair try "
            f"({count}; first: {errors[0].file}: {errors[0].message}); nothing was written. "
            "Try another --seed or a stronger --model"
        )
    return Draft(
        name=name,
        text=text,
        model=author,
        suite=suite.name,
        split=split,
        seed=seed,
        examples=[t.id for t in tasks],
        repaired=repaired,
        calls=calls,
        warnings=[i.message for i in draft_issues(name, text)],
    )


def write_draft(folder: Path, draft: Draft, *, force: bool = False) -> Path:
    """Write ``draft`` as ``folder/SKILL.md`` (atomically; the folder is made). Returns the
    file's path.

    Raises:
        DraftError: as :func:`check_target`.
    """
    check_target(folder, force=force)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SKILL_MD
    write_atomic(path, draft.text)
    return path


# ---------------------------------------------------------------------------------------------
# Creation's base (evolve --create)
# ---------------------------------------------------------------------------------------------


def save_copy(run_dir: Path, text: str, draft: Draft | None = None) -> None:
    """The run folder's copy: ``draft/SKILL.md`` and, when known, ``draft/draft.json``."""
    folder = run_dir / DRAFT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / SKILL_MD, text)
    if draft is not None:
        info = draft.model_dump(mode="json", exclude={"text"})
        write_atomic(folder / DRAFT_INFO, json.dumps(info, indent=2) + "\n")


def create_base(
    repo: SkillRepo,
    run_id: str,
    skill_dir: Path,
    run_dir: Path,
    suite: Suite,
    *,
    llm_config: LLMConfig,
    model: str,
    split: str,
    examples: int,
    seed: int,
    limit: int | None,
    timestamp: int,
) -> tuple[str, Draft | None]:
    """Creation's base stage: draft S0 and commit it as ``t2s/<run>/base`` on top of the
    user's HEAD (their branch, index and working tree untouched), with a copy in
    ``run_dir/draft/``. A base that exists (a resumed run) is kept and never drafted again.

    Returns:
        The base commit, and the draft (None when the base existed).

    Raises:
        RepoError: see :meth:`SkillRepo.check_new_folder`; DraftError, LLMError: see
            :func:`draft_skill`.
    """
    ref = f"t2s/{run_id}/base"
    rel = repo.relpath(skill_dir)
    existing = repo.run_refs(run_id).get(ref)
    if existing is not None:
        if not (run_dir / DRAFT_DIR / SKILL_MD).is_file():  # a kill after the commit
            skill = repo.load_skill(ref, rel)
            save_copy(run_dir, str(skill.files[SKILL_MD]))
        return existing, None
    repo.check_new_folder(run_id, skill_dir)  # before the model call
    draft = draft_skill(
        Path(rel).name,
        suite,
        llm_config=llm_config,
        model=model,
        split=split,
        examples=examples,
        seed=seed,
        limit=limit,
    )
    save_copy(run_dir, draft.text, draft)
    body = (
        f"Creation: {draft.model} drafted {rel}/{SKILL_MD} from the {draft.suite} suite's "
        f"task description and {len(draft.examples)} questions of its {draft.split} split "
        "(no answers shown)."
    )
    commit = repo.snapshot_draft(
        run_id,
        skill_dir,
        {SKILL_MD: draft.text.encode("utf-8")},
        timestamp=timestamp,
        subject=f"trace2skill: base of run {run_id} (Creation: S0 drafted by {draft.model})",
        body=body,
        model=draft.model,
    )
    return commit, draft


def creation_note(run_dir: Path) -> str | None:
    """One line saying a run created its skill (Creation mode), for the summary, report and
    pull request body; None for a run that evolved a written skill."""
    from toolkit.runs import read_manifest

    manifest = read_manifest(run_dir)
    record = manifest.stages.get("evolve") if manifest else None
    if record is None or not record.config.get("create"):
        return None
    info: dict[str, Any] = {}
    path = run_dir / DRAFT_DIR / DRAFT_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        info = {}
    model = info.get("model") or record.config.get("author_model") or record.config.get("model")
    shown = info.get("examples")
    questions = f"{len(shown)} questions" if shown else "questions"
    return (
        f"Creation mode: no skill was written by hand; S0 is a draft by the author model "
        f"{model or '(unknown)'}, written from the suite's task description and {questions} "
        f"of the evolve split (no answers), kept in {DRAFT_DIR}/{SKILL_MD} of the run folder."
    )


__all__ = [
    "DEFAULT_EXAMPLES",
    "DRAFT_DIR",
    "DRAFT_INFO",
    "Draft",
    "DraftError",
    "DraftReply",
    "DraftSection",
    "SYSTEM_MARK",
    "check_skill_name",
    "check_target",
    "create_base",
    "creation_note",
    "draft_issues",
    "draft_messages",
    "draft_skill",
    "example_tasks",
    "folder_name",
    "nearest_existing",
    "render_skill_md",
    "save_copy",
    "write_draft",
]
