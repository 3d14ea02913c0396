"""The ``code`` agent protocol: plain-text replies with fenced Python, parsed (pure).

In the ``json`` protocol every step is one grammar-constrained JSON object, so a small model
writes its code inside a JSON string. In the ``code`` protocol the model replies in plain
text, as it was trained to: a fenced ```python block is run in the task's sandbox session and
its output comes back; the answer is a ``FINAL ANSWER: ...`` line or a ``submit(...)`` call
inside the code; ``read_skill("section-id")`` reads a skill section. This module holds the
prompts and the reply parser; :class:`toolkit.agent.Agent` runs the loop.
"""

from __future__ import annotations

import ast
import re
import textwrap

from pydantic import BaseModel, Field

SUBMIT_MARK = "\x1e<<submit>>"
"""Printed by the sandbox's ``submit()``; the harness reads the answer after it."""

# Defined once per task in the sandbox session: submit() prints a marker the harness parses;
# read_skill() only acknowledges (the harness reads the section from the reply text, so the
# read is exact and recorded even when the code around it fails).
SESSION_SETUP = (
    # Common modules are there already: real WikiTQ runs lost tasks to a NameError for `pd`
    # (code copied from a skill's example without its import). The sandbox preloads pandas.
    "import json, math, re\n"
    "try:\n"
    "    import pandas as pd\n"
    "except ImportError:\n"
    "    pass\n"
    "def submit(answer):\n"
    f"    print({SUBMIT_MARK!r} + str(answer))\n"
    "def read_skill(section_id):\n"
    "    print(f'(skill section {section_id} is shown below)')\n"
)

COLUMNS_CODE = (
    # Run after a KeyError: in a real WikiTQ evaluation 27 of 100 tasks failed on a column the
    # skill's worked example names ('Goals', 'Player') and most resent the same code; the
    # table's own column names are what the model needs to see.
    # Without a DataFrame (csv.DictReader rows are dicts) the CSV files' header rows.
    "def _t2s_columns():\n"
    "    import csv, glob, sys\n"
    "    pd = sys.modules.get('pandas')\n"
    "    frames = [] if pd is None else [(k, v) for k, v in globals().items()\n"
    "              if not k.startswith('_') and isinstance(v, pd.DataFrame)]\n"
    "    for name, frame in frames[:3]:\n"
    "        print(f'{name}: {list(frame.columns)}'[:600])\n"
    "    if frames:\n"
    "        return\n"
    "    for path in sorted(glob.glob('*.csv') + glob.glob('*/*.csv'))[:3]:\n"
    "        with open(path, newline='', encoding='utf-8', errors='replace') as f:\n"
    "            print(f'{path}: {next(csv.reader(f), [])}'[:600])\n"
    "_t2s_columns()\n"
    "del _t2s_columns\n"
)
"""Lists the columns of the session's DataFrames, else the header rows of the CSV files in
the working folder (at most 3, each line bounded)."""


def columns_hint(listing: str) -> str:
    """The note after a KeyError when the session holds DataFrames (``listing``: the output
    of :data:`COLUMNS_CODE`)."""
    return (
        "A KeyError names a key that is not there. The tables have these columns (use these "
        f"exact names):\n{listing.strip()}"
    )


_LABEL_IN_CODE_RE = re.compile(r"(?i)final[ \t]+answer[ \t]*:")


def label_in_code_hint(code: str, error_type: str) -> str:
    """The note after a SyntaxError in code that holds a ``FINAL ANSWER:`` label ("" else).

    Seen with the 1.5B on WikiTQ: ``print(FINAL ANSWER: {n})`` failed three times in a row
    and ended the task, the model reading the error as a problem with its braces.
    """
    if error_type != "SyntaxError" or not _LABEL_IN_CODE_RE.search(code):
        return ""
    return (
        "FINAL ANSWER is not python: write it as a line of your reply, outside the code block. "
        "In the code, print the value itself, e.g. print(n)."
    )


STOP = ["```output", "\nOutput:", "\nObservation:"]
"""Stop sequences of code-protocol calls: a model that finished a code block otherwise goes on
to invent its output (and an answer from it) instead of waiting for the real one."""

_BLOCK_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
# Anywhere in a line ("... so the answer is FINAL ANSWER: 200."): the label is distinctive.
# "FINAL ANSWER is: 4" too; a label with nothing after it is told apart (CodeReply.empty_label).
_FINAL_RE = re.compile(r"(?im)final[ \t]+answer(?:[ \t]+is)?[ \t*_]*[:：][ \t]*(.*?)[ \t]*$")
# \boxed{...} with one level of nested braces (\boxed{\frac{1}{2}}): small models often end
# with it instead of the FINAL ANSWER line they were asked for.
_BOXED_RE = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_READ_RE = re.compile(r"""read_skill\(\s*["']([^"'\n]{1,200})["']\s*\)""")
_CODE_LANGS = frozenset({"", "python", "py", "python3", "ipython"})
# An untagged block runs only if it parses and does something: small models also fence the
# output they imagine (a table, a number), which ran as code and failed, or echoed a guess.
_ACTION_NODES = (
    ast.Call, ast.Assign, ast.AugAssign, ast.Import, ast.ImportFrom, ast.For, ast.While,
    ast.If, ast.With, ast.FunctionDef, ast.ClassDef, ast.Try, ast.Delete,
)  # fmt: skip


class CodeReply(BaseModel):
    """What one plain-text reply asks for."""

    prose: str = Field(description="The reply without its code blocks (the step's thought).")
    code: str | None = Field(None, description="The first Python block, if any.")
    blocks: int = Field(0, description="How many Python blocks the reply held.")
    answer: str | None = Field(
        None,
        description="The last FINAL ANSWER line outside code, else the last \\boxed{...} there.",
    )
    reads: list[str] = Field(default_factory=list, description="read_skill(...) section ids.")
    cut_off: bool = Field(False, description="A code fence was opened and never closed.")
    empty_label: bool = Field(
        False, description="A FINAL ANSWER label with no answer on its line (and none elsewhere)."
    )


def parse_reply(text: str) -> CodeReply:
    """Parse a plain-text reply: code blocks, the final answer, skill reads (pure)."""
    blocks = [
        code
        for m in _BLOCK_RE.finditer(text)
        if m.group(1).lower() in _CODE_LANGS
        and (code := _runnable(m.group(1), m.group(2))) is not None
    ]
    outside = _BLOCK_RE.sub("\n", text)
    cut_off = "```" in outside  # an odd fence left over: the reply stopped inside a block
    if cut_off:
        outside = outside[: outside.index("```")]
    labels = [_clean_answer(m.group(1)) for m in _FINAL_RE.finditer(outside)]
    answers = [a for a in labels if a]
    if not answers:
        answers = [a for a in (_clean_answer(b) for b in _BOXED_RE.findall(outside)) if a]
    return CodeReply(
        prose=outside.strip(),
        code=blocks[0] if blocks else None,
        blocks=len(blocks),
        answer=answers[-1] if answers else None,
        reads=list(dict.fromkeys(_READ_RE.findall(text))),
        cut_off=cut_off,
        empty_label=bool(labels) and not answers,
    )


class PlainAnswer(BaseModel):
    """The answer of a ``plain`` reply, and where it came from."""

    answer: str | None = Field(None, description="The answer; None when the reply has none.")
    from_last_line: bool = Field(
        False, description="No FINAL ANSWER line or \\boxed{}: the last line outside code."
    )


def plain_answer(text: str, *, cut: bool = False) -> PlainAnswer:
    """The answer of a ``plain`` reply (pure): its FINAL ANSWER line, else its last
    ``\\boxed{}``, else its last line outside code blocks.

    The model's own level is judged as a plain chain of thought is, by its last line (the
    suite's scorer then applies its own rule, e.g. GSM8K's last number); a closing fence is
    no line of it, so a reply that is only code has no answer. A reply ``cut`` at max_tokens
    ends where the limit fell, not where the model concluded: its last line is dropped
    (an answer on it may be incomplete) and nothing else stands in for a missing answer.
    """
    if cut:
        text = text[: text.rfind("\n") + 1]
    reply = parse_reply(text)
    if reply.answer is not None:
        return PlainAnswer(answer=reply.answer)
    if cut:
        return PlainAnswer()
    line = last_line(reply.prose)
    return PlainAnswer(answer=line, from_last_line=line is not None)


def _runnable(lang: str, body: str) -> str | None:
    """A fenced block's code, dedented (a block indented under a list item failed with
    IndentationError); None for an untagged block that is not Python doing something."""
    code = textwrap.dedent(body)
    if lang:
        return code  # tagged as Python: run it, a SyntaxError teaches the model too
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    return code if any(isinstance(node, _ACTION_NODES) for node in ast.walk(tree)) else None


def cited_ids(prose: str, ids: list[str]) -> list[str]:
    """The known section ids a reply names in brackets, e.g. ``[gsm8k-math/workflow]`` (pure).

    Only ids of the skill count, so a bracketed word that is not an id is not a citation.
    """
    named = set(re.findall(r"\[([^\[\]\n]{1,200})\]", prose))
    return [i for i in ids if i in named]


# The prompts' own placeholder: the 1.5B echoed "end with FINAL ANSWER: <answer>." from a
# correction note and "<answer>" was submitted as its answer (WikiTQ, code + S0).
_PLACEHOLDER_RE = re.compile(r"(?i)<\s*(?:the\s+|your\s+)?answer(?:\s+only)?\s*>")


def _clean_answer(raw: str) -> str:
    """Strip markdown emphasis, LaTeX boxes and a trailing full stop from an answer; "" for
    the prompts' placeholder (``<answer>``), which is no answer."""
    value = raw.strip().strip("*_`").strip()
    boxed = re.fullmatch(r"\$*\\boxed\{(.*)\}\$*", value)
    if boxed:
        value = boxed.group(1)
    value = value.rstrip(".").strip()
    return "" if _PLACEHOLDER_RE.fullmatch(value) else value


def answer_in_output(answer: str, output: str) -> bool:
    """Whether an answer written beside code agrees with the code's output (pure).

    Only the output's last non-blank line counts: the answer was written before the model saw
    the output, so a table that merely holds the guess somewhere does not confirm it (real
    WikiTQ runs: 'Croatia' was accepted from the rows of a filter whose other row, 'Egypt',
    was the answer; '1' from a row index). Compared without case, spaces, commas, ``$`` and
    ``%``; a number also matches its integer/decimal twin (``42`` and ``42.0``).
    """
    lines = _nonblank_lines(output)
    output = lines[-1] if lines else ""

    def norm(text: str) -> str:
        return re.sub(r"[\s,$%]", "", text.lower())

    wanted = norm(answer)
    if not wanted:
        return False
    try:
        value = float(wanted)
    except ValueError:
        return wanted in norm(output)  # text: anywhere in the output
    # A number must be one of the printed numbers (not a substring: 30 is not in 300).
    numbers = re.findall(r"-?\d+(?:\.\d+)?", output.replace(",", ""))
    return any(abs(float(n) - value) < 1e-9 for n in numbers)


def _nonblank_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def last_line(text: str, max_chars: int = 300) -> str | None:
    """The last non-empty line of a reply, without emphasis (pure); None for an empty reply."""
    lines = _nonblank_lines(text)
    return _clean_answer(lines[-1][-max_chars:]) if lines else None


def output_answer(output: str, max_chars: int = 100) -> str | None:
    """The answer a clean run printed, when it printed exactly one short line (pure).

    Program-aided answering: a value computed by the model's own code beats a number it wrote
    before seeing the output, so this is the answer of a finishing reply whose guess
    disagrees, and of a trajectory that ran out of replies.
    """
    lines = _nonblank_lines(output)
    if len(lines) != 1 or len(lines[0]) > max_chars:
        return None
    labelled = _PRINTED_LABEL_RE.match(lines[0])
    value = labelled.group(1) if labelled else lines[0]
    return _clean_answer(_unwrap_collection(value))


# A value printed after a label of words ("Total ambassadors: 9", "Answer: Sweden"): the
# value is the answer (a WikiTQ task submitted the whole line). A label with digits
# ("Chapter 5: ...") or no space after the colon ("2:30") is part of the value.
_PRINTED_LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z '()_-]{0,40}:\s+(\S.*)$")


def _unwrap_collection(line: str) -> str:
    """A printed Python list/tuple/set of plain values as its items (``['Sweden']`` is
    ``Sweden``; several items are joined by `` | ``); any other line as it is."""
    if not line.startswith(("[", "(", "{")):
        return line
    try:
        value = ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return line
    if not isinstance(value, list | tuple | set) or not value:
        return line
    items = list(value)
    if not all(isinstance(i, str | int | float) and not isinstance(i, bool) for i in items):
        return line
    return " | ".join(str(i) for i in items)


def submitted_answer(output: str) -> tuple[str, str | None]:
    """(output without submit markers, the last submitted answer or None)."""
    if SUBMIT_MARK not in output:
        return output, None
    kept: list[str] = []
    answer: str | None = None
    for line in output.split("\n"):
        if SUBMIT_MARK in line:
            before, _, value = line.partition(SUBMIT_MARK)
            answer = value.strip()
            if before:
                kept.append(before)
        else:
            kept.append(line)
    return "\n".join(kept), answer


def system_text(max_turns: int, with_skill: bool) -> str:
    """The code protocol's instructions (the skill is appended by the agent)."""
    lines = [
        "You solve a task step by step. To run Python, write ONE fenced block:",
        "```python",
        "print(4 * 12 * 3)",
        "```",
        "I run it in a persistent Python session (variables stay between blocks; the task's "
        "files are in the current folder) and reply with its output. Use print() to see "
        "results.",
        "When you know the answer, end your reply with a line:",
        "FINAL ANSWER: <the answer only>",
        "",
        "Rules:",
        "- First say what is asked and plan; then write code for this task.",
        "- Do all arithmetic, counting and comparing in Python, never in your head.",
        "- Wait for the output of your code before you give the final answer.",
        f"- You have at most {max_turns} replies.",
    ]
    if with_skill:
        lines.append(
            '- To read a skill section, write read_skill("section-id") on its own line '
            "(ids are in [brackets])."
        )
        lines.append(
            "- When a skill section guides a step, name it by its id in brackets, e.g. "
            "[skill-name/section]."
        )
    return "\n".join(lines)


PLAIN_SYSTEM = (
    "Answer the question. Think step by step, then end your reply with a line:\n"
    "FINAL ANSWER: <the answer only>"
)
"""The ``plain`` condition: one reply, no tools (the model's own level)."""


PLAIN_REMINDER = "Think step by step, then end with a line: FINAL ANSWER: <the answer only>"


def plain_task_text(summary: str, files: dict[str, str], max_chars: int) -> str:
    """The plain condition's user message: the task with its text files inlined (bounded)."""
    parts = [summary.strip()]
    budget = max_chars
    for name, text in files.items():
        shown = text if len(text) <= budget else text[:budget] + "\n[... cut ...]"
        budget -= len(shown)
        parts.append(f"File {name}:\n{shown}")
        if budget <= 0:
            break
    # Said again after the files: below a long table the system prompt's format was ignored.
    parts.append(PLAIN_REMINDER)
    return "\n\n".join(parts)


def turn_text(step: int, max_turns: int) -> str:
    """Where the agent is in its reply budget (1-based step).

    Only the first and the last reply get a note: a small model copies a note that follows
    every observation into its own reply instead of acting on the output.
    """
    if step >= max_turns:
        return f"Reply {step}/{max_turns} (last): write FINAL ANSWER: <answer> now."
    if step > 1:
        return ""
    return (
        f"Reply {step}/{max_turns}. If this answers the question, write FINAL ANSWER: "
        "<answer>. Otherwise fix or extend the code."
    )


ONE_STEP = "one short step, one small ```python block or the FINAL ANSWER line"
"""What a code-protocol reply cut at max_tokens is asked for instead (:func:`cut_at_limit`)."""


def cut_at_limit(max_tokens: int, one_step: str) -> str:
    """The observation for a reply that stopped at ``max_tokens`` (finish_reason "length").

    Such a reply is not acted on: its end is where the limit fell, so an answer or a value
    taken from it would be a fragment, and telling the model it wrote no code or no answer
    (as the harness did) misleads it. A small model at the limit was usually repeating
    itself, so it is asked for less (``one_step`` says what, in the protocol's terms).
    """
    return (
        f"Your reply stopped at the max_tokens limit ({max_tokens} tokens) before it ended, "
        f"so nothing in it was used. Write less: {one_step}."
    )


CHECK_WITH_CODE = (
    "Compute it in Python before you answer: write one ```python block that prints the answer."
)
"""Sent back once when a FINAL ANSWER comes before any code ran (``AgentConfig.code_check``)."""


def repeated_failure(earlier_reply: int) -> str:
    """Said when a reply sends code that already failed (1-based reply number): the 1.5B
    otherwise sent the same failing block until its replies ran out."""
    return (
        f"This is the code of your reply {earlier_reply} again, and it failed again. Do not "
        "send it a third time: first print the data it uses (names, columns, values), then "
        "write different code."
    )


REPEATS_TO_END = 3
"""Sends of the same failing code that end a task: in real WikiTQ runs no task that sent it a
third time passed afterwards (18 tasks, 0-3 more replies each), so the replies are saved."""


def repeats_end(earlier_reply: int) -> str:
    """Said when the same failing code comes a third time; the task ends there."""
    return (
        f"This code failed for the third time (first in your reply {earlier_reply}): the "
        "task ends here."
    )


def code_key(code: str) -> str:
    """The code with blank lines and trailing spaces dropped: what counts as the same code."""
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())
