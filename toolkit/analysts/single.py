"""The single-call analysts: the error analyst of the paper's ablation, and the success
analyst (lean solution path, then at most 3 lessons). One structured call each."""

from __future__ import annotations

from toolkit.analysts.calls import AnalystOutput, ask
from toolkit.analysts.prompts import error_single_prompt, success_prompt
from toolkit.analysts.records import AnalyseConfig
from toolkit.analysts.replies import ErrorReply, SuccessReply
from toolkit.llm.gateway import Gateway
from toolkit.skill import Skill
from toolkit.trajectory import Trajectory


async def analyse_error_single(
    gateway: Gateway, config: AnalyseConfig, skill: Skill, trajectory: Trajectory, seed: int
) -> AnalystOutput:
    """Diagnose a failed trajectory and patch the skill in one call (no verifier)."""
    out = AnalystOutput()
    reply = await ask(
        gateway, config, error_single_prompt(skill, trajectory), ErrorReply, out, seed
    )
    if reply is not None:
        out.reply = reply
        out.report = f"{reply.diagnosis}\n(faulty step: {reply.failed_step})"
    return out


async def analyse_success(
    gateway: Gateway, config: AnalyseConfig, skill: Skill, trajectory: Trajectory, seed: int
) -> AnalystOutput:
    """Extract the lean solution path and at most 3 lessons of a passed trajectory."""
    out = AnalystOutput()
    reply = await ask(gateway, config, success_prompt(skill, trajectory), SuccessReply, out, seed)
    if reply is not None:
        out.reply = reply
        lessons = "\n".join(f"- {lesson}" for lesson in reply.lessons)
        out.report = f"Solution path: {reply.solution_path}\nLessons:\n{lessons}"
    return out
