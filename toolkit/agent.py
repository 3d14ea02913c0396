"""The agent harness: a ReAct loop where every step is one structured model call.

Each step asks the model for ONE JSON object ``{thought, cited_sections, tool, args}``
(:func:`action_model` builds its pydantic model per skill: ``cited_sections`` is an enum of the
skill's section ids and reference files, every string and list is bounded so llama.cpp's
grammar cannot run away). Tools:

* ``python`` (``args.code``): runs in the task's sandbox session (variables persist between
  steps, the task files are in the working directory);
* ``read_skill_file`` (``args.path`` and/or ``args.section``): returns a skill file or one
  section (with its subsections); every read is recorded as a :class:`SectionUse`;
* ``submit`` (``args.answer``): ends the trajectory.

Skill delivery (:data:`toolkit.trajectory.Delivery`): ``system`` puts the whole SKILL.md in the
system prompt (as in the paper), with each heading tagged with its section id; ``progressive``
lists only the headings and ids (plus the reference files) and the agent reads bodies on
demand, which makes section use exact; ``none`` is the no-skill baseline.

The chat is append-only (system, task, then assistant reply / observation pairs), so each call's
prompt extends the previous one and a local model reuses its KV cache. Tool failures (bad
arguments, exceptions, time limits) become observations and the loop goes on; a failed model
call ends the trajectory with ``stop_reason="error"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from toolkit import code_protocol, skill_echo, tools_protocol
from toolkit.errors import ContextWindowError, LLMError, SectionLookupError, SkillError
from toolkit.known import add_known
from toolkit.llm.gateway import Completion, Gateway
from toolkit.sandbox import RunResult, Session
from toolkit.skill import SKILL_MD, Skill, find_section, split_lines, strip_eol
from toolkit.trajectory import Action, SectionUse, Step, StopReason, UseKind

AGENT_SCHEMA_VERSION = 1

TOOLS_WITH_SKILL = ("python", "read_skill_file", "submit")
TOOLS_WITHOUT_SKILL = ("python", "submit")

# Bounds of the response schema (llama.cpp's grammar needs every string and list bounded).
# llama.cpp expands a maxLength into nested rules and refuses (llama-cpp-python 0.3.36 then
# crashes) past its repetition threshold: measured, 1000 works and 1500 does not.
MAX_GRAMMAR_STRING = 1000
MAX_THOUGHT_CHARS = 600
MAX_CODE_CHARS = MAX_GRAMMAR_STRING
MAX_PATH_CHARS = 200
MAX_ANSWER_CHARS = 500
MAX_CITED = 3
# Skill scripts/assets named in the system prompt (a long list would crowd out the skill).
MAX_LISTED_SKILL_FILES = 20
# Task files the plain condition inlines (it has no tools to open anything else).
PLAIN_TEXT_SUFFIXES = frozenset({"csv", "tsv", "txt", "json", "md", "html"})


class AgentConfig(BaseModel):
    """How the agent runs: budgets, sampling and skill delivery."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = AGENT_SCHEMA_VERSION
    protocol: Literal["json", "code", "tools", "plain"] = Field(
        "code",
        description="json: one grammar-constrained JSON action per step; code: plain-text "
        "replies with fenced python blocks and a FINAL ANSWER line (toolkit.code_protocol); "
        "tools: native function calling (toolkit.tools_protocol); plain: one reply with no "
        "tools, the task's text files inlined (the model's own level).",
    )
    plain_file_chars: int = Field(
        12_000, ge=0, description="plain: characters of task files inlined in the prompt."
    )
    delivery: Literal["system", "progressive", "none"] = Field(
        "system", description="system | progressive | none (see the module docstring)."
    )
    max_turns: int = Field(6, ge=1, le=50, description="Most steps (model calls) per task.")
    token_budget: int = Field(
        60_000,
        ge=1,
        description="Most tokens (prompt + completion, all steps) per task; where the "
        "provider reports no usage, its calls count at an estimate from their text.",
    )
    max_tokens: int = Field(1024, ge=64, description="Most tokens generated per step.")
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature (> 0 samples).")
    observation_chars: int = Field(
        2000, ge=100, description="Python output shown to the model (longer is cut with a note)."
    )
    skill_read_chars: int = Field(
        6000, ge=100, description="Characters of a skill file or section one read returns."
    )
    code_check: bool = Field(
        True,
        description="code and tools protocols: an answer (a FINAL ANSWER line, or a submit "
        "call) that comes before any code ran is sent back once, asking for code that prints "
        "it (small models answer from mental arithmetic otherwise).",
    )
    force_submit: bool = Field(
        True,
        description="On the last turn, and right after the agent repeated a step, the "
        "response schema allows only submit (a small model otherwise loops to the end).",
    )
    python_wall_s: float | None = Field(
        None, gt=0, description="Wall-clock limit of one python call (None: the sandbox's)."
    )


class ToolArgs(BaseModel):
    """Arguments of a tool call (each tool uses its own; the others stay empty)."""

    # The JSON schema lists every key as required although validation lets them default to
    # "": a grammar-constrained model then writes all four keys in a fixed order (a small
    # model given optional keys tends to write "args": {}, and optional keys make the
    # llama.cpp grammar branch at every key), while other providers may leave unused ones out.
    model_config = ConfigDict(json_schema_extra={"required": ["code", "path", "section", "answer"]})

    code: str = Field("", max_length=MAX_CODE_CHARS, description="python: the code to run.")
    path: str = Field("", max_length=MAX_PATH_CHARS, description="read_skill_file: a file.")
    section: str = Field(
        "", max_length=MAX_PATH_CHARS, description="read_skill_file: a section id."
    )
    answer: str = Field("", max_length=MAX_ANSWER_CHARS, description="submit: the answer.")


class AgentResult(BaseModel):
    """What the loop produced for one task (the rollout adds the verdict)."""

    steps: list[Step] = Field(default_factory=list)
    final_answer: str | None = None
    stop_reason: StopReason
    error: str | None = None
    section_uses: list[SectionUse] = Field(default_factory=list)
    tokens_in: int | None = Field(0, description="None once a call's count was not reported.")
    tokens_out: int | None = Field(0, description="None once a call's count was not reported.")
    cost_usd: float | None = Field(0.0, description="None once a call could not be priced.")
    budget_tokens: int = Field(
        0,
        description="Tokens counted against the token budget: the reported counts, estimated "
        "from the text where the provider reported none (Completion.budget_tokens).",
    )


# ---------------------------------------------------------------------------------------------
# Skill views (pure)
# ---------------------------------------------------------------------------------------------


def citable_ids(skill: Skill | None) -> list[str]:
    """What ``cited_sections`` may name: SKILL.md's section ids, then the reference files."""
    if skill is None:
        return []
    ids = [s.id for s in skill.sections if s.level > 0]
    return ids + skill.reference_files()


def use_of(ref: str, step: int, kind: UseKind) -> SectionUse:
    """The :class:`SectionUse` of a citable id (a SKILL.md section id or a file path)."""
    if ref.startswith("references/") or ref == SKILL_MD:
        return SectionUse(step=step, kind=kind, file=ref)
    return SectionUse(step=step, kind=kind, file=SKILL_MD, section_id=ref)


class _CachedSchema(BaseModel):
    """Base of the step models: the gateway asks for the JSON schema on every call, and
    building it costs ~2 ms (a third of the harness's own CPU per step), so the default
    schema is built once per class and a fresh copy handed out (decoding its JSON is ~10x
    cheaper than ``copy.deepcopy``)."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # noqa: D102
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        cached = cls.__dict__.get("_t2s_schema_json")
        if cached is None:
            cached = json.dumps(super().model_json_schema())
            cls._t2s_schema_json = cached  # type: ignore[attr-defined]
        return json.loads(cached)


def action_model(skill_ids: Sequence[str], tools: Sequence[str]) -> type[BaseModel]:
    """The response model of one step, with ``cited_sections`` constrained to ``skill_ids``.

    Without skill ids the field is left out. The JSON schema carries ``enum``, ``maxItems``
    and ``maxLength`` bounds, so a grammar-constrained model can only cite real sections.
    """
    fields: dict[str, Any] = {
        "thought": (str, Field(max_length=MAX_THOUGHT_CHARS, description="Your reasoning.")),
    }
    if skill_ids:
        cited = Literal[tuple(skill_ids)]  # type: ignore[valid-type]
        fields["cited_sections"] = (
            list[cited],  # type: ignore[valid-type]
            Field(max_length=MAX_CITED, description="Ids of the skill sections you follow."),
        )
    fields["tool"] = (Literal[tuple(tools)], Field(description="The tool to call."))  # type: ignore[valid-type]
    fields["args"] = (ToolArgs, Field(description="The tool's arguments."))
    return create_model("AgentStep", __base__=_CachedSchema, **fields)


def annotated_skill_md(skill: Skill) -> str:
    """SKILL.md without frontmatter, each heading line tagged with its section id."""
    doc = skill.doc
    parts = [doc.preamble.strip("\n") + "\n"] if doc.preamble.strip() else []
    for section in doc.headed_sections:
        lines = split_lines(section.text)
        heading = strip_eol(lines[0]).rstrip()
        parts.append(f"{heading} [{section.id}]\n" + "".join(lines[1:]))
    return "".join(parts).strip("\n")


def skill_index(skill: Skill) -> str:
    """The progressive view: headings with their ids and the reference files, no bodies."""
    rows = []
    for section in skill.doc.headed_sections:
        indent = "  " * (section.level - 1)
        rows.append(f"{indent}- {section.id}: {section.heading}")
    refs = []
    for path in skill.reference_files():
        headed = skill.parsed(path).headed_sections
        title = headed[0].heading if headed else ""
        refs.append(f"- {path}" + (f": {title}" if title else ""))
    text = "Sections of SKILL.md (read one with read_skill_file, args.section = its id):\n"
    text += "\n".join(rows)
    if refs:
        text += "\nReference files (read with read_skill_file, args.path):\n" + "\n".join(refs)
    return text


# ---------------------------------------------------------------------------------------------
# Prompts (pure)
# ---------------------------------------------------------------------------------------------


def _json_system_text(skill: Skill | None, config: AgentConfig) -> str:
    """The json protocol's instructions: tools, one JSON example, rules."""
    with_skill = skill is not None and config.delivery != "none"
    # The example's thought plans before the code: small models copy its length and shape.
    # The 1.5B also copies its code verbatim as a first step (12 of 50 GSM8K tasks without a
    # skill, 0 of 19 with one); a simpler made-up example plus a "never reuse the example"
    # rule was copied more (16 of 50), so this one stays until something measures better.
    example: dict[str, Any] = {
        "thought": "Asked: the total cost. 4 boxes of 12 pens at 3 dollars per pen, "
        "so cost = boxes * pens_per_box * price. I compute it in Python."
    }
    if with_skill and skill is not None:
        ids = citable_ids(skill)
        workflow = [i for i in ids if i.rsplit("/", 1)[-1] == "workflow"]
        example["cited_sections"] = workflow[:1] or ids[1:2] or ids[:1]
    example["tool"] = "python"
    example["args"] = {
        "code": "boxes = 4\npens_per_box = 12\nprice = 3\nprint(boxes * pens_per_box * price)",
        "path": "",
        "section": "",
        "answer": "",
    }
    lines = [
        "You solve a task step by step using tools.",
        "Each reply is ONE JSON object, for example:",
        json.dumps(example),
        "",
        "Tools:",
        "- python: run Python code (args.code). The task files are in the current folder. "
        "Use print() to see results. Variables persist between steps.",
    ]
    if with_skill:
        lines.append(
            "- read_skill_file: read a skill section (args.section = its id) "
            "or a skill file (args.path)."
        )
    lines += [
        "- submit: give the final answer (args.answer). This ends the task.",
        "",
        "Rules:",
        "- In thought, first say what is asked, then plan the next step.",
        "- Do all arithmetic, counting and comparing in python, never in your head.",
        "- Read the python output before you submit; if it shows an error, fix the code.",
        "- Submit as soon as you know the answer: args.answer holds the answer only.",
        f"- You have at most {config.max_turns} steps.",
    ]
    if with_skill:
        lines.append(
            "- cited_sections: the ids of the skill sections that guide this step ([] if none)."
        )
    return "\n".join(lines)


def system_prompt(skill: Skill | None, config: AgentConfig) -> str:
    """The system message: the protocol's instructions, then the skill per delivery."""
    with_skill = skill is not None and config.delivery != "none"
    if config.protocol == "code":
        text = code_protocol.system_text(config.max_turns, with_skill)
    elif config.protocol == "tools":
        text = tools_protocol.system_text(config.max_turns, with_skill)
    elif config.protocol == "plain":
        text = code_protocol.PLAIN_SYSTEM
    else:
        text = _json_system_text(skill, config)
    if with_skill and skill is not None:
        text += _skill_appendix(skill, config)
    return text


def _skill_appendix(skill: Skill, config: AgentConfig) -> str:
    """The skill as the system prompt shows it: whole (``system``) or as an index."""
    code = config.protocol == "code"
    header = f"\n\n# Skill: {skill.name}\n{skill.description}\n"
    if config.delivery == "system" or config.protocol == "plain":  # plain cannot read
        text = header + "Follow this skill. Section ids are in [brackets].\n\n"
        text += annotated_skill_md(skill)
        refs = skill.reference_files()
        if refs:
            how = 'read_skill("references/...")' if code else "read_skill_file, args.path"
            if config.protocol == "tools":
                how = "read_skill_file, path"
            text += f"\n\nReference files (read with {how}): " + ", ".join(refs)
        return text + _skill_workspace_note(skill, config)
    index = skill_index(skill)
    if code:
        index = index.replace("read_skill_file, args.section = its id", 'read_skill("id")')
        index = index.replace("read_skill_file, args.path", 'read_skill("path")')
    elif config.protocol == "tools":
        index = index.replace("args.section", "section").replace("args.path", "path")
    return header + "Follow this skill. " + index + _skill_workspace_note(skill, config)


def _skill_workspace_note(skill: Skill, config: AgentConfig) -> str:
    """Where the skill's scripts and assets are: in the working folder, at the paths the skill
    names them by (plain has no python to run them)."""
    files = skill.workspace_files()
    if not files or config.protocol == "plain":
        return ""
    shown = ", ".join(files[:MAX_LISTED_SKILL_FILES])
    more = len(files) - MAX_LISTED_SKILL_FILES
    if more > 0:
        shown += f" and {more} more"
    return (
        "\n\nThe skill's own files are in the current folder at these paths (run a script "
        f"from python with subprocess and sys.executable): {shown}"
    )


def task_message(summary: str, files: Sequence[str], config: AgentConfig) -> str:
    """The first user message: the task summary, the workspace files and the step count."""
    parts = [summary.strip()]
    if files:
        parts.append("Files in the current folder: " + ", ".join(files))
    if config.protocol == "code":
        parts.append(code_protocol.turn_text(1, config.max_turns))
    elif config.protocol == "tools":
        parts.append(tools_protocol.turn_text(1, config.max_turns))
    else:
        parts.append(turn_note(1, config.max_turns))
    return "\n\n".join(parts)


def turn_note(step: int, max_turns: int, after: str | None = None) -> str:
    """Where the agent is in its step budget (1-based step) and what to do next.

    ``after`` is the tool of the previous step: after python output, a small model tends to
    re-run the same code until its turns run out, so the note asks it to submit if it can.
    """
    if step >= max_turns:
        return f"Step {step}/{max_turns} (last step): call submit with your answer now."
    if after == "python":
        return (
            f"Step {step}/{max_turns}. If the output above answers the question, call submit "
            "with it now. Otherwise fix or extend the code."
        )
    return f"Step {step}/{max_turns}. Reply with one JSON object."


def agent_fingerprint(config: AgentConfig) -> str:
    """12 hex chars naming the agent's behaviour: its config and its prompt texts.

    Part of every trajectory id, so finished work is reused only by the same agent: change a
    budget, the sampling or the wording of the prompts and tasks run afresh.
    """
    texts = [
        config.model_dump_json(),
        system_prompt(None, config),
        task_message("", ["table.csv"], config),
    ]
    if config.protocol == "json":
        texts += [
            turn_note(1, config.max_turns),
            turn_note(2, config.max_turns, "python"),
            turn_note(config.max_turns, config.max_turns),
        ]
    elif config.protocol == "code":
        texts += [
            code_protocol.turn_text(2, config.max_turns),
            code_protocol.turn_text(config.max_turns, config.max_turns),
            code_protocol.SESSION_SETUP,
            code_protocol.CHECK_WITH_CODE,
            code_protocol.repeated_failure(1),
            code_protocol.repeats_end(1),
            *code_protocol.STOP,
        ]
    elif config.protocol == "tools":
        texts += [
            tools_protocol.turn_text(1, config.max_turns),
            tools_protocol.turn_text(config.max_turns, config.max_turns),
            tools_protocol.no_call_text("local/x"),
            tools_protocol.no_call_text("x"),
            tools_protocol.compute_first("x"),
            json.dumps(tools_protocol.tool_specs(True, ["x"])),
        ]
    else:
        texts.append(code_protocol.plain_task_text("", {"t.csv": "a"}, config.plain_file_chars))
    if config.protocol != "plain":
        texts += [code_protocol.COLUMNS_CODE, code_protocol.columns_hint("x")]
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]


def truncate(text: str, limit: int, hint: str) -> tuple[str, bool]:
    """Cut ``text`` to ``limit`` characters, noting how much was left out and what to do."""
    if len(text) <= limit:
        return text, False
    kept = text[:limit]
    return f"{kept}\n[... {len(text) - limit} more characters not shown; {hint}]", True


# ---------------------------------------------------------------------------------------------
# read_skill_file (pure)
# ---------------------------------------------------------------------------------------------


class SkillRead(BaseModel):
    """The outcome of one read_skill_file call."""

    text: str = ""
    error: str | None = None
    file: str | None = None
    section_id: str | None = None


def _resolve_file(skill: Skill, path: str) -> str | None:
    path = path.strip().removeprefix("./").lstrip("/")
    if path in skill.files:
        return path
    # Small models drop the folder ("problem-patterns.md") or the extension.
    matches = [
        p
        for p in skill.files
        if p.rsplit("/", 1)[-1] in (path, path + ".md") or p in (path + ".md",)
    ]
    return matches[0] if len(matches) == 1 else None


def read_skill(skill: Skill, path: str, section: str) -> SkillRead:
    """Resolve a read_skill_file call: a whole file, or one section (with its subsections).

    ``section`` may be an id, a heading, or ``file#id``; a section id of a reference file is
    looked up there when ``path`` names no file. Unknown names give an error listing the
    valid ones (the agent sees it as its observation).
    """
    path, section = path.strip(), section.strip()
    if "#" in section and not path:
        path, section = section.split("#", 1)
    elif "#" in path and not section:
        path, section = path.split("#", 1)
    if not path and not section:
        return SkillRead(error="read_skill_file needs args.section (a section id) or args.path")
    file = SKILL_MD
    if path:
        resolved = _resolve_file(skill, path)
        if resolved is None:
            listing = ", ".join(sorted(p for p in skill.files if isinstance(skill.files[p], str)))
            return SkillRead(error=f"no skill file {path!r}; files: {listing}")
        file = resolved
    try:
        content = skill.text(file)
    except SkillError as exc:
        return SkillRead(error=str(exc))
    if not section:
        return SkillRead(text=content, file=file)
    candidates = [file] if path else [SKILL_MD, *skill.reference_files()]
    for candidate in candidates:
        sections = skill.parsed(candidate).sections
        try:
            found = find_section(sections, section)
        except SectionLookupError:
            continue
        lines = split_lines(skill.text(candidate))
        text = "".join(lines[found.start_line - 1 : found.subtree_end_line])
        return SkillRead(text=text, file=candidate, section_id=found.id)
    ids = [s.id for s in skill.parsed(candidates[0]).sections if s.level > 0]
    shown = ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else "")
    return SkillRead(error=f"no section {section!r} in {candidates[0]}; section ids: {shown}")


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


class Agent:
    """A frozen agent: model, gateway, skill and config. :meth:`run` solves one task."""

    def __init__(
        self,
        model: str,
        gateway: Gateway,
        skill: Skill | None,
        config: AgentConfig | None = None,
    ) -> None:
        """Prepare the prompts and the response model once; they are shared by every task."""
        self.model = model
        self.gateway = gateway
        self.config = config or AgentConfig()
        self.skill = skill if self.config.delivery != "none" else None
        self.skill_ids = citable_ids(self.skill)
        # The skill's scripts and assets, left out of each task's file list (found once).
        self.skill_files = frozenset(self.skill.workspace_files() if self.skill else ())
        tools = TOOLS_WITH_SKILL if self.skill is not None else TOOLS_WITHOUT_SKILL
        self.tools: tuple[str, ...] = tools
        self.response_model = action_model(self.skill_ids, tools)
        self.submit_model = action_model(self.skill_ids, ("submit",))
        self.system = system_prompt(self.skill, self.config)
        # Lines the agent may copy from the skill (not from the harness's own prompts).
        self.echo_lines: skill_echo.SkillLines = {}
        if self.skill is not None:
            harness = system_prompt(None, self.config) + task_message("", [], self.config)
            self.echo_lines = skill_echo.skill_lines(self.skill, harness)
        self.tool_specs: list[dict[str, Any]] = []
        if self.config.protocol == "tools":
            tools_protocol.check_support(model)
            self.tool_specs = tools_protocol.tool_specs(self.skill is not None, self.skill_ids)

    async def run(
        self, summary: str, session: Session, *, seed: int, memory: str = ""
    ) -> AgentResult:
        """Solve one task whose prompt text is ``summary`` in ``session``; never raises for
        model or tool failures (they end or continue the trajectory, recorded).

        ``memory``: this task's memory section (:func:`toolkit.memory.memory_block`), put at
        the end of the system prompt; empty (the default) leaves the prompt as it is.
        """
        result = await self._solve(summary, session, seed=seed, memory=memory)
        for step in result.steps:
            code = step.action.args.get("code", "")
            used = {u.ref for u in result.section_uses if u.step == step.index}
            for file, section in skill_echo.echoed(f"{step.thought}\n{code}", self.echo_lines):
                use = SectionUse(step=step.index, kind="echoed", file=file, section_id=section)
                if use.ref not in used:
                    result.section_uses.append(use)
        return result

    async def _solve(
        self, summary: str, session: Session, *, seed: int, memory: str = ""
    ) -> AgentResult:
        cfg = self.config
        files = await session.list_files()
        if self.skill_files:  # the skill's own files are named in the system prompt
            files = [f for f in files if f not in self.skill_files]
        system = self.system + memory
        if cfg.protocol == "plain":
            return await self._run_plain(summary, files, session, seed=seed, system=system)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": task_message(summary, files, cfg)},
        ]
        if cfg.protocol == "code":
            return await self._run_code(messages, session, seed=seed)
        if cfg.protocol == "tools":
            return await self._run_tools(messages, session, seed=seed)
        result = AgentResult(stop_reason="max_turns")
        must_submit = False
        for index in range(cfg.max_turns):
            if cfg.force_submit and index == cfg.max_turns - 1:
                must_submit = True
            model = self.submit_model if must_submit else self.response_model
            completion = await self._call(messages, index, seed, result, model)
            if completion is None:
                return result
            reply = completion.value
            step = _new_step(
                index,
                completion,
                reply.thought,
                Action(tool=reply.tool, args=_used_args(reply.tool, reply.args)),
                cited_sections=list(getattr(reply, "cited_sections", []) or []),
            )
            for ref in dict.fromkeys(step.cited_sections):
                result.section_uses.append(use_of(ref, index, "cited"))
            started = time.perf_counter()
            submitted = await self._act(reply.tool, reply.args, step, session, result)
            step.tool_s = time.perf_counter() - started
            result.steps.append(step)
            if submitted:
                result.stop_reason = "submitted"
                return result
            messages.append({"role": "assistant", "content": completion.text})
            note = turn_note(index + 2, cfg.max_turns, step.action.tool)
            if index > 0 and _same_action(step, result.steps[-2]):
                must_submit = cfg.force_submit
                note = (
                    "You repeated your previous step: call submit with your answer now."
                    if must_submit
                    else "You repeated your previous step; do something else. " + note
                )
            messages.append(
                {"role": "user", "content": f"Observation:\n{step.observation}\n\n{note}"}
            )
        return result

    async def _call(
        self,
        messages: list[dict[str, Any]],
        index: int,
        seed: int,
        result: AgentResult,
        response_model: type[BaseModel] | None = None,
        **params: Any,
    ) -> Completion | None:
        """One step's model call, counted in ``result``; None (the stop reason set) when the
        token budget is spent or the model failed."""
        cfg = self.config
        # Unreported counts are estimated here rather than left out: a provider that reports
        # no usage would otherwise lift the budget altogether.
        if result.budget_tokens >= cfg.token_budget:
            result.stop_reason = "token_budget"
            return None
        try:
            completion = await self.gateway.acomplete_full(
                messages,
                self.model,
                response_model,
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
                seed=seed + index,
                **params,
            )
        except LLMError as exc:
            # A conversation that outgrew the context ends as a turn limit ends it (running
            # the task again would meet the same wall); another failure is an error.
            context = isinstance(exc, ContextWindowError)
            result.stop_reason = "context_window" if context else "error"
            result.error = str(exc)
            result.tokens_in = add_known(result.tokens_in, exc.tokens_in)
            result.tokens_out = add_known(result.tokens_out, exc.tokens_out)
            result.cost_usd = add_known(result.cost_usd, exc.cost_usd)
            return None
        result.tokens_in = add_known(result.tokens_in, completion.tokens_in)
        result.tokens_out = add_known(result.tokens_out, completion.tokens_out)
        result.budget_tokens += completion.budget_tokens
        result.cost_usd = add_known(result.cost_usd, completion.cost_usd)
        return completion

    async def _run_plain(
        self, summary: str, files: list[str], session: Session, *, seed: int, system: str
    ) -> AgentResult:
        """The ``plain`` condition: one reply, no tools; text files inlined in the prompt."""
        cfg = self.config
        texts: dict[str, str] = {}
        if files:
            await session.ready()
            for name in files:
                if name.rsplit(".", 1)[-1].lower() in PLAIN_TEXT_SUFFIXES:
                    data = await asyncio.to_thread(session.read_bytes, name)
                    texts[name] = data.decode("utf-8", "replace")
        messages = [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": code_protocol.plain_task_text(summary, texts, cfg.plain_file_chars),
            },
        ]
        result = AgentResult(stop_reason="max_turns")
        completion = await self._call(messages, 0, seed, result)
        if completion is None:
            return result
        plain = code_protocol.plain_answer(completion.text, cut=completion.cut)
        answer = plain.answer
        step = _new_step(
            0,
            completion,
            completion.text,
            Action(tool="submit" if answer else "respond", args={}),
        )
        if answer is not None:
            step.action.args["answer"] = answer
            result.final_answer = answer
            result.stop_reason = "submitted"
            if plain.from_last_line:
                step.observation = "No FINAL ANSWER line: the reply's last line is the answer."
            elif completion.cut:
                step.observation = (
                    f"The reply stopped at the max_tokens limit ({cfg.max_tokens} tokens) after "
                    "its FINAL ANSWER: that answer stands."
                )
        elif completion.cut:
            step.error = _cut_error(cfg.max_tokens)
            step.observation = (
                f"The reply stopped at the max_tokens limit ({cfg.max_tokens} tokens) with no "
                "FINAL ANSWER line: no answer."
            )
        elif completion.text.strip():
            step.error = "no answer (no line outside code blocks)"
        else:
            step.error = "no answer (an empty reply)"
        result.steps.append(step)
        return result

    async def _run_code(
        self, messages: list[dict[str, Any]], session: Session, *, seed: int
    ) -> AgentResult:
        """The ``code`` protocol's loop: plain-text replies, fenced python, FINAL ANSWER."""
        cfg = self.config
        result = AgentResult(stop_reason="max_turns")
        await session.run(code_protocol.SESSION_SETUP)
        last_printed: str | None = None  # the last clean one-line output: the forced answer
        checked = not cfg.code_check  # a FINAL ANSWER before any code is sent back once
        failed: dict[str, list[int]] = {}  # code that failed -> the replies that sent it
        for index in range(cfg.max_turns):
            completion = await self._call(messages, index, seed, result, stop=code_protocol.STOP)
            if completion is None:
                if result.stop_reason != "context_window":
                    return result
                break
            reply = code_protocol.parse_reply(completion.text)
            step = _new_step(
                index,
                completion,
                reply.prose[: MAX_THOUGHT_CHARS * 4],
                Action(tool="respond", args={}),
                cited_sections=code_protocol.cited_ids(reply.prose, self.skill_ids),
            )
            for ref in step.cited_sections:
                result.section_uses.append(use_of(ref, index, "cited"))
            started = time.perf_counter()
            last = index == cfg.max_turns - 1
            answer: str | None = None
            printed: str | None = None
            if completion.cut:
                # Stopped at max_tokens: nothing in it runs or counts (it was not a reply
                # without code or answer, it was too long), and the code check is not spent.
                _cut_step(step, cfg.max_tokens, code_protocol.ONE_STEP)
            else:
                answer, printed = await self._act_code(
                    reply, step, session, result, must_compute=not (checked or last), failed=failed
                )
                # One check per task: any code run or any answer (sent back or taken) spends it.
                checked = checked or reply.code is not None or reply.answer is not None
            step.tool_s = time.perf_counter() - started
            result.steps.append(step)
            if answer is not None:
                result.final_answer = answer
                result.stop_reason = "submitted"
                return result
            last_printed = printed or last_printed
            if reply.code is not None and (
                len(failed.get(code_protocol.code_key(reply.code), ()))
                >= code_protocol.REPEATS_TO_END
            ):
                result.stop_reason = "stuck"  # its step says so
                break
            messages.append({"role": "assistant", "content": completion.text})
            note = code_protocol.turn_text(index + 2, cfg.max_turns)
            text = _with_note(step.observation, note)
            messages.append({"role": "user", "content": text})
        if cfg.force_submit and last_printed is not None and result.steps:
            # Out of replies (or of context) without an answer: the last value its code
            # printed stands.
            result.steps[-1].observation += (
                f"\n\nNo FINAL ANSWER {_out_of_room(result)}: the last printed value "
                f"({last_printed}) is submitted."
            )
            _take_fallback(result, last_printed)
        return result

    async def _act_code(
        self,
        reply: code_protocol.CodeReply,
        step: Step,
        session: Session,
        result: AgentResult,
        *,
        failed: dict[str, list[int]],
        must_compute: bool = False,
    ) -> tuple[str | None, str | None]:
        """Do what a code-protocol reply asks; fill the step.

        Returns the accepted answer (or None) and the value a clean run printed on its one
        line (or None).

        Skill reads first (exact, recorded even if the code fails), then the first python
        block; a FINAL ANSWER line counts only when no code ran or the code ran cleanly, and
        a ``submit()`` inside the code counts even if the code failed after it. ``failed``
        (code that failed -> the steps that sent it) lets a repeat of failing code be called
        out, and a third send end the task.
        """
        cfg = self.config
        parts: list[str] = []
        for ref in reply.reads:
            parts.append(self._read_for_code(ref, step, result))
        if reply.reads:
            step.action = Action(tool="read_skill_file", args={"section": reply.reads[0]})
        if reply.cut_off:
            step.error = "reply cut off inside a code block"
            parts.append(
                "Your reply was cut off inside a code block (too long), so nothing ran. "
                "Write shorter code."
            )
            _observe(step, parts)
            return None, None
        code_ok, ended = True, False
        submitted: str | None = None
        output = printed_text = ""
        if reply.code is not None:
            step.action = Action(tool="python", args={"code": reply.code})
            run = await session.run(reply.code, wall_s=cfg.python_wall_s)
            output, submitted = code_protocol.submitted_answer(run.render())
            printed_text = code_protocol.submitted_answer(run.stdout)[0]
            if run.error is not None:
                code_ok = False
                step.error = f"{run.error.type}: {run.error.message}"[:300]
                output = _with_note(output, await _columns_hint(session, run))
                output = _with_note(
                    output, code_protocol.label_in_code_hint(reply.code, run.error.type)
                )
            shown, step.observation_truncated = truncate(
                output, cfg.observation_chars, "print less, e.g. df.head() or len(x)"
            )
            silent = not (run.stdout.strip() or run.stderr.strip() or run.error)
            parts.append(
                "Output: (nothing printed: use print() to see a value)"
                if silent
                else f"Output:\n{shown}"
            )
            if reply.blocks > 1:
                parts.append(
                    f"Only the first of your {reply.blocks} code blocks ran: send one per reply."
                )
            if run.error is not None:
                sends = failed.setdefault(code_protocol.code_key(reply.code), [])
                sends.append(step.index)
                ended = len(sends) >= code_protocol.REPEATS_TO_END
                if ended:
                    parts.append(code_protocol.repeats_end(sends[0] + 1))
                elif len(sends) > 1:
                    parts.append(code_protocol.repeated_failure(sends[0] + 1))
        printed = code_protocol.output_answer(printed_text) if code_ok else None
        if submitted:
            step.action = Action(tool="submit", args={"answer": submitted})
            _observe(step, parts)
            return submitted, printed
        if reply.answer is not None:
            if reply.code is None and must_compute:
                step.action = Action(tool="respond", args={})
                parts.append(
                    f"Your FINAL ANSWER ({reply.answer}) came before any code ran. "
                    + code_protocol.CHECK_WITH_CODE
                )
                _observe(step, parts)
                return None, None
            if reply.code is None:
                step.action = Action(tool="submit", args={"answer": reply.answer})
                _observe(step, parts)
                return reply.answer, printed
            # Written before the model saw the output: a guess, unless the output agrees.
            if code_ok and code_protocol.answer_in_output(reply.answer, output):
                _observe(step, parts)
                return reply.answer, printed
            if printed is not None:
                # A finishing reply whose code printed one value: the computed value wins.
                step.action = Action(tool="submit", args={"answer": printed})
                parts.append(
                    f"Your FINAL ANSWER ({reply.answer}) was written before the output and "
                    f"disagrees with it: the printed value ({printed}) is submitted."
                )
                _observe(step, parts)
                return printed, printed
            why = "the code above failed" if not code_ok else "it does not match the output"
            if not ended:
                parts.append(
                    f"Your FINAL ANSWER ({reply.answer}) was not accepted: {why}. Read the "
                    "output, then give the final answer."
                )
        elif reply.code is None and not reply.reads:
            step.error = "no code and no answer"
            parts.append(
                # The 1.5B wrote the label and the answer on the next line, four times over,
                # when told it had written no FINAL ANSWER line.
                "Your FINAL ANSWER line had no answer on it: write the answer on the same "
                "line, FINAL ANSWER: <answer>."
                if reply.empty_label
                else "Your reply had no ```python block and no FINAL ANSWER line. Write code "
                "to run, or end with FINAL ANSWER: <answer>."
            )
        _observe(step, parts)
        return None, printed

    def _read_for_code(self, ref: str, step: Step, result: AgentResult) -> str:
        """Read one skill section or file named in a reply; the observation part."""
        if self.skill is None:
            step.error = "read_skill without a skill"
            return "Error: there is no skill to read in this task."
        path, section = (ref, "") if ref.startswith("references/") or ref == SKILL_MD else ("", ref)
        read = read_skill(self.skill, path, section)
        if read.error is not None:
            step.error = read.error[:300]
            return f"Error: {read.error}"
        assert read.file is not None
        if read.section_id is None:
            step.read_files.append(read.file)
        else:
            step.read_sections.append(f"{read.file}#{read.section_id}")
        result.section_uses.append(
            SectionUse(step=step.index, kind="read", file=read.file, section_id=read.section_id)
        )
        text, _ = truncate(read.text, self.config.skill_read_chars, "read one section at a time")
        return f"Skill {ref}:\n{text}"

    async def _run_tools(
        self, messages: list[dict[str, Any]], session: Session, *, seed: int
    ) -> AgentResult:
        """The ``tools`` protocol's loop: native tool calls, one acted on per step.

        A reply without a call is read as the code protocol reads one (an answer line ends
        the task, a fenced block runs as a python call); see :mod:`toolkit.tools_protocol`.
        """
        cfg = self.config
        result = AgentResult(stop_reason="max_turns")
        # The model's latest own value: the one line a clean python run printed, or the last
        # line of a prose reply. It ends a task whose model stopped calling tools.
        fallback: str | None = None
        no_calls = 0  # replies in a row with no call, code or answer
        computed = False  # python ran at least once
        checked = not cfg.code_check  # an answer before any python is sent back once
        for index in range(cfg.max_turns):
            completion = await self._call(messages, index, seed, result, tools=self.tool_specs)
            if completion is None:
                if result.stop_reason != "context_window":
                    return result
                break
            text = completion.text.strip()
            step = _new_step(
                index, completion, text[:MAX_THOUGHT_CHARS], Action(tool="respond", args={})
            )
            note = tools_protocol.turn_text(index + 2, cfg.max_turns)
            if completion.cut:
                # Stopped at max_tokens: nothing in it is acted on, and its last line (where
                # the limit fell) is no value of the model's, so the fallback keeps its own.
                _cut_step(step, cfg.max_tokens, tools_protocol.ONE_STEP)
                result.steps.append(step)
                messages.append({"role": "assistant", "content": text})
                messages.append({"role": "user", "content": _with_note(step.observation, note)})
                continue
            must_compute = not (checked or computed or index == cfg.max_turns - 1)
            written = None if completion.tool_calls else tools_protocol.written_call(text)
            calls = completion.tool_calls or ([written] if written is not None else [])
            if not calls:
                reply = code_protocol.parse_reply(text)
                # Code beside an answer was written before its output existed: until some
                # python ran, the code runs and the answer waits (the 1.5B wrote both).
                code_first = not computed and index < cfg.max_turns - 1
                if reply.code is not None and (code_first or not reply.answer):
                    no_calls, computed = 0, True
                    step.action = Action(tool="python", args={"code": reply.code})
                    started = time.perf_counter()
                    args = ToolArgs.model_construct(code=reply.code)  # unbounded, as calls are
                    await self._act("python", args, step, session, result)
                    step.tool_s = time.perf_counter() - started
                    fallback = _printed(step) or fallback
                    step.observation += "\n(Your python block ran; call the python tool next.)"
                elif reply.answer and must_compute:
                    checked = True
                    step.observation = tools_protocol.compute_first(reply.answer)
                elif reply.answer:
                    self._submit_prose(step, result, reply.answer, "Submitted.")
                    return result
                else:
                    no_calls += 1
                    if not tools_protocol.copies_harness(text):
                        fallback = code_protocol.last_line(text) or fallback
                    if no_calls >= 2 and fallback and cfg.force_submit:
                        # A second reply in a row without a call: the model has stopped using
                        # tools (the 1.5B then repeats itself to the last step), so its own
                        # latest value stands, read as the plain condition reads an answer.
                        why = f"No tool call twice in a row: your latest value ({fallback}) is "
                        self._submit_prose(step, result, fallback, why + "the answer.")
                        return result
                    step.error = "no tool call"
                    step.observation = tools_protocol.no_call_text(self.model)
                result.steps.append(step)
                messages.append({"role": "assistant", "content": text})
                messages.append({"role": "user", "content": _with_note(step.observation, note)})
                continue
            no_calls = 0
            call = calls[0]
            # No validation: the json protocol's bounds exist for its grammar only.
            args = ToolArgs.model_construct(
                **{k: str(v) for k, v in call.arguments.items() if k in ToolArgs.model_fields}
            )
            # An unknown tool keeps the arguments as the model wrote them (they say what it
            # wanted); a known one records the arguments it uses.
            known = call.name in self.tools
            used = _used_args(call.name, args) if known else dict(call.arguments)
            step.action = Action(tool=call.name, args=used)
            started = time.perf_counter()
            submitted = False
            if call.error is not None:
                step.error = f"{call.name or 'tool call'}: {call.error}"[:300]
                step.observation = f"Error: the tool call's {call.error}."
            elif call.name == "submit" and args.answer.strip() and must_compute:
                checked = True
                step.observation = tools_protocol.compute_first(args.answer.strip())
            else:
                computed = computed or call.name == "python"
                submitted = await self._act(call.name, args, step, session, result)
                if call.name == "python":
                    fallback = _printed(step) or fallback
            step.tool_s = time.perf_counter() - started
            result.steps.append(step)
            if submitted:
                result.stop_reason = "submitted"
                return result
            observation = step.observation or "(no output)"
            if len(calls) > 1:
                # In the step too: the trajectory shows what the model was told.
                observation += "\n(Only your first tool call was run; call one tool at a time.)"
                step.observation = observation
            messages.append(
                {"role": "assistant", "content": text or None, "tool_calls": [call.openai()]}
            )
            content = _with_note(observation, note)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
        if cfg.force_submit and fallback and result.steps:
            # Out of steps without a submit: the model's latest own value stands (program-aided
            # as in the code protocol when it was printed; as in plain when it was prose).
            result.steps[-1].observation += (
                f"\n\nNo submit {_out_of_room(result)}: your latest value ({fallback}) is "
                "submitted."
            )
            _take_fallback(result, fallback)
        return result

    @staticmethod
    def _submit_prose(step: Step, result: AgentResult, answer: str, observation: str) -> None:
        """End the task with an answer the model wrote without the submit tool."""
        step.action = Action(tool="submit", args={"answer": answer})
        step.observation = observation
        result.steps.append(step)
        result.final_answer = answer
        result.stop_reason = "submitted"

    async def _act(
        self, tool: str, args: ToolArgs, step: Step, session: Session, result: AgentResult
    ) -> bool:
        """Run the tool, filling the step's observation; True when the agent submitted."""
        cfg = self.config
        if tool == "submit":
            answer = args.answer.strip()
            if not answer:
                step.error = "submit without args.answer"
                step.observation = "Error: submit needs args.answer (the final answer)."
                return False
            result.final_answer = answer
            step.observation = "Submitted."
            return True
        if tool == "python":
            if not args.code.strip():
                step.error = "python without args.code"
                step.observation = "Error: python needs args.code (the code to run)."
                return False
            run = await session.run(args.code, wall_s=cfg.python_wall_s)
            output = run.render()
            if run.error is not None:
                step.error = f"{run.error.type}: {run.error.message}"[:300]
                output = _with_note(output, await _columns_hint(session, run))
            step.observation, step.observation_truncated = truncate(
                output, cfg.observation_chars, "print less, e.g. df.head() or len(x)"
            )
            return False
        if tool == "read_skill_file" and self.skill is not None:
            read = read_skill(self.skill, args.path, args.section)
            if read.error is not None:
                step.error = read.error[:300]
                step.observation = f"Error: {read.error}"
                return False
            assert read.file is not None
            if read.section_id is None:
                step.read_files.append(read.file)
            else:
                step.read_sections.append(f"{read.file}#{read.section_id}")
            result.section_uses.append(
                SectionUse(step=step.index, kind="read", file=read.file, section_id=read.section_id)
            )
            step.observation, step.observation_truncated = truncate(
                read.text, cfg.skill_read_chars, "read one section at a time with args.section"
            )
            return False
        step.error = f"unknown tool {tool!r}"
        step.observation = f"Error: unknown tool {tool!r}: the tools are {', '.join(self.tools)}."
        return False


def _new_step(
    index: int, completion: Completion, thought: str, action: Action, **fields: Any
) -> Step:
    """A step of one model call, with the call's usage."""
    return Step(
        index=index,
        thought=thought,
        action=action,
        tokens_in=completion.tokens_in,
        tokens_out=completion.tokens_out,
        latency_s=completion.latency_s,
        cache_hit=completion.cache_hit,
        call_id=completion.call_id,
        **fields,
    )


def _cut_error(max_tokens: int) -> str:
    """The step error of a reply that stopped at ``max_tokens`` (finish_reason "length")."""
    return f"reply cut at max_tokens ({max_tokens} tokens)"


def _cut_step(step: Step, max_tokens: int, one_step: str) -> None:
    """Record a reply cut at ``max_tokens`` in its step: not acted on, the model told why."""
    step.error = _cut_error(max_tokens)
    step.observation = code_protocol.cut_at_limit(max_tokens, one_step)


def _printed(step: Step) -> str | None:
    """The one short line a clean python run printed (the observation of ``step``), if so."""
    shown = step.observation  # the run's render(): stdout, then any [stderr] part
    if step.error is not None or step.observation_truncated or "[stderr]" in shown:
        return None
    return None if shown == "(no output)" else code_protocol.output_answer(shown)


def _out_of_room(result: AgentResult) -> str:
    """How a task ran out of room before an answer, for the closing observation."""
    if result.stop_reason == "context_window":
        return "before the conversation filled the model's context window"
    if result.stop_reason == "stuck":
        return "before the task ended"
    return "by the last reply"


def _take_fallback(result: AgentResult, answer: str) -> None:
    """End an out-of-room task with the model's latest own value as its answer."""
    result.final_answer = answer
    result.stop_reason = "submitted"
    result.error = None  # a context-window stop is recorded in the closing observation


async def _columns_hint(session: Session, run: RunResult) -> str:
    """After a KeyError, the columns of the session's DataFrames ("" for other errors, or
    when there is no DataFrame)."""
    if run.error is None or run.error.type != "KeyError":
        return ""
    listing = await session.run(code_protocol.COLUMNS_CODE, wall_s=5.0)
    if listing.error is not None or not listing.stdout.strip():
        return ""
    return code_protocol.columns_hint(listing.stdout)


def _with_note(text: str, note: str) -> str:
    """An observation with the turn note after it, when there is one."""
    return f"{text}\n\n{note}" if note else text


def _observe(step: Step, parts: list[str]) -> None:
    step.observation = "\n\n".join(parts)


def _same_action(a: Step, b: Step) -> bool:
    return a.action == b.action


def _used_args(tool: str, args: ToolArgs) -> dict[str, str]:
    """The arguments that matter for ``tool`` (empty ones dropped), as recorded in the step."""
    wanted = {"python": ("code",), "read_skill_file": ("path", "section"), "submit": ("answer",)}
    keys = wanted.get(tool, ("code", "path", "section", "answer"))
    return {k: getattr(args, k) for k in keys if getattr(args, k)}
