"""Prompt texts of the analysts (pure functions of the skill and the trajectory).

Everything the analyst reads is bounded: the trajectory's steps are cut to a character
budget (the first and last steps kept: where the agent set out and where it ended), so a
long trajectory and a full SKILL.md still fit an 8k context.
"""

from __future__ import annotations

import json
import re

from toolkit.analysts.leaks import mask_values
from toolkit.analysts.replies import MAX_EDITS, MAX_LESSONS
from toolkit.skill import SKILL_MD, Skill
from toolkit.trajectory import Trajectory

MAX_TRAJECTORY_CHARS = 6000
MAX_STEP_FIELD_CHARS = 700
MAX_SKILL_CHARS = 12000
MAX_PROMPT_CHARS = 2000
MAX_PROMPT_MESSAGE_CHARS = 1200


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " ...[truncated]"


def render_skill(skill: Skill) -> str:
    """The editable skill files as the analyst sees them: exact text (anchors are copied from
    it), then the section ids of SKILL.md."""
    parts = []
    for path in sorted(skill.files):
        content = skill.files[path]
        if isinstance(content, str) and (path == SKILL_MD or path.startswith("references/")):
            parts.append(f"===== {path} =====\n{content}")
    ids = "\n".join(f"- {s.id}: {s.heading}" for s in skill.doc.headed_sections)
    text = _cut("\n".join(parts), MAX_SKILL_CHARS)
    return f"{text}\n===== section ids of {SKILL_MD} =====\n{ids}"


#: Lines of :func:`render_trajectory`'s own format: an edit holding one copied the prompt.
_RENDERED = re.compile(
    r"^\s*(--- step \d+ ---|(thought|action|observation):\s|(STOP REASON|VERDICT|GOLD ANSWER): "
    r"|AGENT STEPS:|AGENT PROMPT \(|TASK \()",
    re.MULTILINE,
)


def copies_trajectory(content: str) -> bool:
    """True when ``content`` holds a line of the trajectory as the analyst was shown it
    (``--- step 1 ---``, ``action: python {...``): the real WikiTQ run's 1.5B appended its
    prompt's step list to the skill as a "lesson"."""
    return bool(_RENDERED.search(content))


def render_prompt(trajectory: Trajectory) -> str | None:
    """An imported trajectory's prompt (system prompt, opening user messages), bounded; None
    when it has none beyond the question (our own rollouts record none)."""
    question = trajectory.question.strip()
    parts = [
        f"[{m.role}] {_cut(m.content.strip(), MAX_PROMPT_MESSAGE_CHARS)}"
        for m in trajectory.prompt
        # The task message is shown as TASK already (official logs prefix it "Task: ").
        if not (m.role == "user" and m.content.strip().removeprefix("Task:").strip() == question)
    ]
    return _cut("\n".join(parts), MAX_PROMPT_CHARS) if parts else None


def render_trajectory(trajectory: Trajectory, *, show_gold: bool) -> str:
    """The task, the agent's prompt (imports), steps, final answer and the verdict, bounded.

    ``show_gold=False`` masks the gold answer's values (the agentic analyst must find the
    answer with the verifier, or its PASS would prove nothing).
    """
    steps = []
    for step in trajectory.steps:
        args = json.dumps(step.action.args, ensure_ascii=False)
        steps.append(
            f"--- step {step.index} ---\nthought: {_cut(step.thought, MAX_STEP_FIELD_CHARS)}\n"
            f"action: {step.action.tool} {_cut(args, MAX_STEP_FIELD_CHARS)}\n"
            f"observation: {_cut(step.observation, MAX_STEP_FIELD_CHARS)}"
        )
    while len(steps) > 2 and sum(map(len, steps)) > MAX_TRAJECTORY_CHARS:
        steps.pop(len(steps) // 2)  # keep the first and last steps
    verdict = trajectory.verdict
    prompt = render_prompt(trajectory)
    lines = [
        f"TASK ({trajectory.suite} {trajectory.task_id}):\n{_cut(trajectory.question, 2000)}",
        *([f"AGENT PROMPT (what the agent read before step 0):\n{prompt}"] if prompt else []),
        "AGENT STEPS:\n" + ("\n".join(steps) if steps else "(none)"),
        f"FINAL ANSWER: {trajectory.final_answer!r}",
        f"STOP REASON: {trajectory.stop_reason}",
        f"VERDICT: {'PASS' if verdict.passed else 'FAIL'} ({verdict.details})",
    ]
    if show_gold:
        lines.append(f"GOLD ANSWER: {', '.join(verdict.gold) or '(not recorded)'}")
    text = "\n\n".join(lines)
    return text if show_gold else mask_values(text, verdict.gold)


_PATCH_RULES = f"""Write the lesson as a patch of the skill (at most {MAX_EDITS} edits):
- file: "SKILL.md" (or an existing references/<name>.md);
- op: "append_to_section" (target_section = a section id from the list) is the safest;
  "insert_after"/"insert_before" need target_text copied EXACTLY from the file;
  "replace_in_section" needs old_text copied EXACTLY; "add_section": content starts with
  "## Heading";
- unused fields are "";
- content: a short general rule for similar tasks, in markdown (e.g. "- Always ...").
Never write this task's answer, numbers or names into the skill: write the method."""


def error_single_prompt(skill: Skill, trajectory: Trajectory) -> list[dict[str, str]]:
    """Single-call error analyst: diagnose the failure and patch the skill, in one reply."""
    system = (
        "You improve an agent's skill from its mistakes. Read the skill and a FAILED "
        "trajectory. Find what went wrong, trace it to the agent's decision (the step), and "
        "write the smallest skill change that would have prevented it.\n\n" + _PATCH_RULES
    )
    user = (
        f"SKILL:\n{render_skill(skill)}\n\nFAILED TRAJECTORY:\n"
        f"{render_trajectory(trajectory, show_gold=True)}\n\n"
        "Reply with one JSON object: diagnosis, failed_step, patch."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def success_prompt(skill: Skill, trajectory: Trajectory) -> list[dict[str, str]]:
    """Success analyst: the lean solution path, then at most 3 lessons, as a patch."""
    system = (
        "You improve an agent's skill from its successes. Read the skill and a SUCCESSFUL "
        "trajectory. First write the lean solution path (only the steps that mattered), then "
        f"at most {MAX_LESSONS} lessons that would help on similar tasks and are not already "
        "in the skill, then the patch that adds them.\n\n" + _PATCH_RULES
    )
    user = (
        f"SKILL:\n{render_skill(skill)}\n\nSUCCESSFUL TRAJECTORY:\n"
        f"{render_trajectory(trajectory, show_gold=False)}\n\n"
        "Reply with one JSON object: solution_path, lessons, patch."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def agentic_prompt(
    skill: Skill, trajectory: Trajectory, files: list[str], max_turns: int
) -> list[dict[str, str]]:
    """The agentic error analyst's opening messages (system + the case)."""
    system = f"""You are an error analyst with tools. An agent FAILED a task while using a skill.
Your job: find what went wrong, trace it to the agent's decision, make a minimal fix (solve the
task correctly yourself) and check the fix with the verifier until it says PASS. Then finish.

Each reply is ONE JSON object: {{"thought": "...", "tool": "...", "args": {{"code": "...",
"answer": "..."}}}} (unused args are ""). Tools:
- "python": run args.code in the task's workspace (the task files are in the working
  directory; variables persist between steps; print what you need);
- "evaluate_output": the task's verifier checks args.answer; it replies PASS or FAIL;
- "finish": stop (after PASS); you will then be asked for the report and the skill patch.
You have at most {max_turns} steps."""
    listing = ", ".join(files) if files else "(no files)"
    user = (
        f"SKILL:\n{render_skill(skill)}\n\nFAILED TRAJECTORY:\n"
        f"{render_trajectory(trajectory, show_gold=False)}\n\nWORKSPACE FILES: {listing}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def agentic_report_request(passed: bool) -> str:
    """The last user message of the agentic analyst: write the report and the patch."""
    state = "Your fix reached PASS." if passed else "Your fix did not reach PASS."
    return (
        f"{state} Now write the report as one JSON object: diagnosis (what went wrong and the "
        "agent decision behind it), failed_step (index of the faulty agent step), patch.\n\n"
        + _PATCH_RULES
    )
