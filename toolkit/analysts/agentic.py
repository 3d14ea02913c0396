"""The agentic error analyst: a ReAct loop over a failed trajectory with the task's workspace
and the suite's verifier as tools.

Each step is one structured call ``{thought, tool, args{code, answer}}``:

* ``python`` runs code in a sandbox session holding the task's files (as the agent had them);
* ``evaluate_output`` scores ``args.answer`` with the suite's own verifier (for spreadsheets:
  the workbooks the analyst wrote in the workspace) and answers ``PASS`` or ``FAIL`` with the
  details, the gold values masked (the analyst must find the answer: its PASS is the quality
  gate, so it must not be able to copy it);
* ``finish`` ends the loop (so does the end of ``max_turns``: no call is spent on a forced
  ``finish``).

If the fix reached PASS, one more call asks for the report and the patch (an
:class:`~toolkit.analysts.replies.ErrorReply`); otherwise the analysis is dropped with reason
``fix-not-passed`` (no report call: it would be thrown away).

The steps pile up in one conversation; when it outgrows the model's context window, the old
observations are elided (all but the last two, then all) and the step is asked again, so a
small-context model keeps working instead of losing the analysis as ``context-full``. A step
that repeats an earlier one is not run again: a note answers the first repeat, the second
ends the analysis (``fix-not-passed``; a small model does not break out of such a loop).
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from pydantic import BaseModel

from toolkit.agent import truncate
from toolkit.analysts.calls import AnalystOutput, ask
from toolkit.analysts.leaks import mask_values
from toolkit.analysts.prompts import agentic_prompt, agentic_report_request
from toolkit.analysts.records import AnalyseConfig
from toolkit.analysts.replies import AnalystStep, ErrorReply
from toolkit.llm.gateway import Gateway
from toolkit.rollout import score_answer, session_files
from toolkit.sandbox import SandboxPool, Session
from toolkit.skill import Skill
from toolkit.tasks import Suite, Task
from toolkit.trajectory import Trajectory

M = TypeVar("M", bound=BaseModel)

OBSERVATION_CHARS = 1500
PYTHON_WALL_S = 20.0
#: What an old observation becomes once the conversation outgrew the context window.
ELIDED = "Observation: [elided to fit the model's context window; run the code again if needed]"
#: Observations kept whole at the first eliding (the latest are the ones the next step needs).
KEEP_OBSERVATIONS = 2
#: Reply limit of one step (the report keeps the config's): what a local model reserves of
#: its context. The 1.5B's steps in the real WikiTQ evolve: median 49 tokens, most 369; the
#: config's 1,536 left a skill + trajectory prompt (~5,500 tokens) room for two steps in 8k.
STEP_MAX_TOKENS = 768
#: Repeats of an earlier step (same tool and arguments) at which the analysis stops: the first
#: repeat is answered with a note, and a small model that repeats itself again does not break
#: out (in the real WikiTQ evolve every such analysis repeated one step up to max_turns).
MAX_REPEATS = 2


def repeat_note(tool: str, first: int) -> str:
    """The observation for a step that repeats step ``first`` (not run again)."""
    if tool == "python":
        return (
            f"Note: you ran exactly this code at step {first}; its output has not changed. Do "
            "something different: change the code, or check the answer it found with "
            "evaluate_output."
        )
    return (
        f"FAIL again: you checked this same answer at step {first}. Work out a different "
        "answer with python first."
    )


def elide_observations(messages: list[dict[str, Any]], keep: int) -> int:
    """Replace all observations but the last ``keep`` with :data:`ELIDED`, in place; the
    number replaced (0: nothing left to elide). The analyst's own steps stay: they say what
    was tried."""
    whole = [
        i
        for i, m in enumerate(messages)
        if m["role"] == "user" and m["content"].startswith("Observation:\n")
    ]
    old = whole[: len(whole) - keep] if keep else whole
    for i in old:
        messages[i] = {"role": "user", "content": ELIDED}
    return len(old)


async def _ask_within_context(
    gateway: Gateway,
    config: AnalyseConfig,
    messages: list[dict[str, Any]],
    response_model: type[M],
    out: AnalystOutput,
    seed: int,
    max_tokens: int | None = None,
) -> M | None:
    """:func:`ask`, asked again with old observations elided when the conversation outgrew
    the context window."""
    reply = await ask(gateway, config, messages, response_model, out, seed, max_tokens)
    for keep in (KEEP_OBSERVATIONS, 0):
        if reply is not None or not (out.failure or "").startswith("context-full"):
            break
        if elide_observations(messages, keep):
            out.failure = None
            out.turns -= 1  # the same turn, asked again (the failed call stays in calls)
            reply = await ask(gateway, config, messages, response_model, out, seed, max_tokens)
    return reply


async def _evaluate(
    suite: Suite, task: Task, answer: str, session: Session, gold: list[str]
) -> tuple[bool, str]:
    """The verifier's verdict on ``answer`` as (passed, observation)."""
    if not answer.strip() and suite.name != "spreadsheet":
        return False, "Error: evaluate_output needs args.answer (the answer to check)."
    await session.ready()
    if suite.name == "spreadsheet":  # LibreOffice recalculation blocks for ~1 s
        verdict = await asyncio.to_thread(score_answer, suite, task, answer, session.path)
    else:
        verdict = score_answer(suite, task, answer, session.path)
    if verdict.passed:
        return True, "PASS. Your fix is correct: call finish now."
    return False, "FAIL: " + mask_values(verdict.details or "wrong answer", gold)


async def _act(
    step: AnalystStep,
    suite: Suite,
    task: Task,
    session: Session,
    gold: list[str],
    out: AnalystOutput,
) -> str:
    """Run one python or evaluate_output step; its observation."""
    if step.tool == "python":
        if not step.args.code.strip():
            return "Error: python needs args.code."
        run = await session.run(step.args.code, wall_s=PYTHON_WALL_S)
        return truncate(run.render(), OBSERVATION_CHARS, "print less")[0]
    passed, observation = await _evaluate(suite, task, step.args.answer, session, gold)
    out.fix_passed = out.fix_passed or passed
    return observation


async def analyse_error_agentic(
    gateway: Gateway,
    config: AnalyseConfig,
    skill: Skill,
    trajectory: Trajectory,
    suite: Suite,
    task: Task,
    pool: SandboxPool,
    seed: int,
) -> AnalystOutput:
    """Run the agentic error analyst on one failed trajectory (see the module docstring)."""
    out = AnalystOutput(fix_passed=False)
    # The agent's workspace as it had it, the skill's scripts included.
    files = session_files(suite, task, skill, trajectory.protocol)
    gold = list(trajectory.verdict.gold)
    thoughts: list[str] = []
    seen: dict[tuple[str, str, str], int] = {}
    repeats = 0
    async with pool.session(files) as session:
        messages = agentic_prompt(skill, trajectory, sorted(files or {}), config.max_turns)
        for index in range(config.max_turns):
            step = await _ask_within_context(
                gateway, config, messages, AnalystStep, out, seed + index, STEP_MAX_TOKENS
            )
            if step is None:
                out.report = "\n".join(thoughts)
                return out
            thoughts.append(f"[{index}] {step.tool}: {step.thought}")
            messages.append({"role": "assistant", "content": step.model_dump_json()})
            if step.tool == "finish":
                break
            action = (step.tool, step.args.code.strip(), step.args.answer.strip())
            if action in seen:
                if out.fix_passed:  # a passed check asked again: as good as finish
                    break
                repeats += 1
                if repeats >= MAX_REPEATS:
                    break
                observation = repeat_note(step.tool, seen[action])
            else:
                seen[action] = index
                observation = await _act(step, suite, task, session, gold, out)
            messages.append({"role": "user", "content": f"Observation:\n{observation}"})
    if not out.fix_passed:
        out.report = "\n".join(thoughts)
        out.failure = "fix-not-passed: the analyst's fix never reached PASS with the verifier"
        if repeats >= MAX_REPEATS:
            out.failure += f" (stopped at step {out.turns - 1}: it kept repeating earlier steps)"
        return out
    messages.append({"role": "user", "content": agentic_report_request(True)})
    reply = await _ask_within_context(
        gateway, config, messages, ErrorReply, out, seed + config.max_turns
    )
    if reply is None:
        out.report = "\n".join(thoughts)
        return out
    out.reply = reply
    out.report = f"{reply.diagnosis}\n(faulty step: {reply.failed_step})\n" + "\n".join(thoughts)
    return out
