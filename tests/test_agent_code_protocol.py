"""The code protocol: plain-text replies, fenced python in the sandbox, FINAL ANSWER."""

from __future__ import annotations

from tests.test_agent import GSM8K_SKILL, gateway, loop, pool, solve, step_no  # noqa: F401
from toolkit.agent import AgentConfig, agent_fingerprint, system_prompt
from toolkit.code_protocol import label_in_code_hint, parse_reply, plain_answer, submitted_answer
from toolkit.llm import FaultKind

FENCE = "```"


def code(body: str, before: str = "Plan: compute it.", after: str = "") -> str:
    return f"{before}\n{FENCE}python\n{body}\n{FENCE}\n{after}"


# ---- parser (pure) ---------------------------------------------------------------------------


def test_parse_code_answer_reads_and_cut_off() -> None:
    reply = parse_reply(code("print(6 * 7)", after='read_skill("gsm8k-math/workflow")'))
    assert reply.code == "print(6 * 7)\n" and reply.blocks == 1 and reply.answer is None
    assert reply.reads == ["gsm8k-math/workflow"] and not reply.cut_off
    assert parse_reply("So it is 42.\n**Final Answer:** $\\boxed{42}$").answer == "42"
    assert parse_reply("FINAL ANSWER: 1,200.").answer == "1,200"
    assert parse_reply("The output is 900, so the answer is FINAL ANSWER: 200.").answer == "200"
    two = parse_reply(code("a = 1") + code("print(a)"))
    assert two.blocks == 2 and two.code == "a = 1\n"
    cut = parse_reply(f"Let me write it.\n{FENCE}python\nfor i in range(")
    assert cut.cut_off and cut.code is None
    # A FINAL ANSWER inside code is code, not the answer.
    assert parse_reply(code('print("FINAL ANSWER: 3")')).answer is None
    # Other languages are not run.
    assert parse_reply(f"{FENCE}bash\nls\n{FENCE}").code is None


def test_the_prompts_placeholder_is_no_answer() -> None:
    # The 1.5B echoed a correction note, and "<answer>" was submitted as its answer.
    echoed = parse_reply("Write code to run, or end with FINAL ANSWER: <answer>.")
    assert echoed.answer is None and echoed.empty_label
    assert parse_reply("FINAL ANSWER: <the answer only>").answer is None
    assert parse_reply("FINAL ANSWER: <b>").answer == "<b>"  # not the placeholder
    assert parse_reply("So.\nFinal answer: < Your Answer >").answer is None


def test_indented_blocks_are_dedented_and_imagined_output_is_not_run() -> None:
    """Seen in real 1.5B WikiTQ rollouts: a python block indented under a list item failed
    with IndentationError, and an untagged block holding the output the model imagined (a
    table) ran as code."""
    indented = parse_reply(
        f"1. Load it:\n   {FENCE}python\n   import math\n   print(1)\n   {FENCE}"
    )
    assert indented.code == "import math\nprint(1)\n"
    table = f"{FENCE}\n  Season   Tier\n0  2003-04  1\n{FENCE}\n" + code("print(2)")
    reply = parse_reply(table)
    assert reply.code == "print(2)\n" and reply.blocks == 1
    guessed = parse_reply(f"{FENCE}\n42\n{FENCE}\nFINAL ANSWER: 42")
    assert guessed.code is None and guessed.answer == "42"
    assert parse_reply(f"{FENCE}\nx = 6 * 7\nprint(x)\n{FENCE}").code == "x = 6 * 7\nprint(x)\n"
    # Tagged python runs even when it does not parse: the SyntaxError is the observation.
    assert parse_reply(f"{FENCE}python\nprint(\n{FENCE}").code == "print(\n"


def test_answer_beside_code_must_agree_with_the_output() -> None:
    from toolkit.code_protocol import answer_in_output

    assert answer_in_output("600", "total: 600\n")
    assert answer_in_output("1,200", "1200.0")
    assert answer_in_output("$42", "42")
    assert answer_in_output("Paris", "['paris']")
    assert not answer_in_output("300", "600")
    assert not answer_in_output("30", "300")
    assert not answer_in_output("", "600")
    # Only the last line confirms a guess: a table holding it somewhere does not.
    rows = "    Nation  Gold\n7  Croatia   0.0\n8    Egypt   0.0\n2\n"
    assert not answer_in_output("Croatia", rows)
    assert not answer_in_output("7", rows)
    assert answer_in_output("2", rows)
    assert answer_in_output("Egypt", "rows: 2\nEgypt\n\n")


def test_a_guess_beside_code_is_refused_when_the_output_disagrees(loop, pool, gateway) -> None:  # noqa: F811
    def script(messages):
        if step_no(messages) == 0:
            return code('print("rows:", 3)\nprint(3 * 25 * 8)', after="FINAL ANSWER: 300")
        assert "(300) was not accepted: it does not match the output" in messages[-1]["content"]
        return "FINAL ANSWER: 600"

    result, _ = solve(loop, pool, gateway, script, protocol="code")
    assert result.final_answer == "600" and len(result.steps) == 2
    agreed, _ = solve(
        loop,
        pool,
        gateway,
        lambda m: code("print(6 * 7)", after="FINAL ANSWER: 42"),
        protocol="code",
    )
    assert agreed.final_answer == "42" and len(agreed.steps) == 1


def test_a_guess_found_only_in_printed_rows_is_sent_back(loop, pool, gateway) -> None:  # noqa: F811
    # The real 1.5B wrote "FINAL ANSWER: Croatia" beside a filter whose rows it had not seen
    # (Croatia and Egypt); the guess was taken because 'Croatia' was somewhere in the output.
    rows = 'print("Croatia 0"); print("Egypt 0"); print(2)'

    def script(messages):
        if step_no(messages) == 0:
            return code(rows, after="FINAL ANSWER: Croatia")
        assert "(Croatia) was not accepted" in messages[-1]["content"]
        return "FINAL ANSWER: Egypt"

    result, _ = solve(loop, pool, gateway, script, protocol="code")
    assert result.final_answer == "Egypt" and len(result.steps) == 2


def test_an_answer_before_any_code_is_sent_back_once(loop, pool, gateway) -> None:  # noqa: F811
    def script(messages):
        if step_no(messages) == 0:
            return "6 * 7 is 41.\nFINAL ANSWER: 41"
        assert "came before any code ran. Compute it in Python" in messages[-1]["content"]
        return "FINAL ANSWER: 41"  # a second answer without code is taken

    result, _ = solve(loop, pool, gateway, script, protocol="code")
    assert result.final_answer == "41" and len(result.steps) == 2
    assert result.steps[0].action.tool == "respond" and result.steps[1].action.tool == "submit"
    unchecked, _ = solve(
        loop, pool, gateway, lambda m: "FINAL ANSWER: 42", protocol="code", code_check=False
    )
    assert unchecked.final_answer == "42" and len(unchecked.steps) == 1
    assert agent_fingerprint(AgentConfig(protocol="code")) != agent_fingerprint(
        AgentConfig(protocol="code", code_check=False)
    )


def test_only_the_first_and_last_replies_get_a_turn_note(loop, pool, gateway) -> None:  # noqa: F811
    replies = [code("x = 6"), code("y = 7"), code("print(x * y)", after="FINAL ANSWER: 42")]
    result, model = solve(
        loop, pool, gateway, lambda m: replies[step_no(m)], protocol="code", max_turns=3
    )
    assert result.final_answer == "42"
    firsts = [r.messages[1]["content"] for r in model.requests]
    assert all("Reply 1/3." in text for text in firsts)
    assert model.requests[1].messages[-1]["content"].startswith("Output: (nothing printed")
    assert "Reply 3/3 (last)" in model.requests[2].messages[-1]["content"]


def test_sections_named_in_brackets_are_citations(loop, pool, gateway) -> None:  # noqa: F811
    from toolkit.code_protocol import cited_ids

    ids = ["gsm8k-math/workflow", "gsm8k-math/units"]
    assert cited_ids("As [gsm8k-math/units] says, and [not-an-id].", ids) == ["gsm8k-math/units"]
    reply = code("print(6 * 7)", before="Per [gsm8k-math/workflow]: compute.", after="")
    result, model = solve(
        loop, pool, gateway, lambda m: reply if step_no(m) == 0 else "FINAL ANSWER: 42",
        protocol="code",
    )  # fmt: skip
    assert result.steps[0].cited_sections == ["gsm8k-math/workflow"]
    assert [(u.kind, u.ref) for u in result.section_uses] == [
        ("cited", "SKILL.md#gsm8k-math/workflow")
    ]
    assert "name it by its id in brackets" in model.requests[0].messages[0]["content"]


def test_copied_skill_lines_are_echoed_uses(loop, pool, gateway) -> None:  # noqa: F811
    rule = "Do the arithmetic in Python, never in your head: mental arithmetic causes most"
    replies = [
        code("print(6 * 7)", before=f"{rule} wrong answers."),
        code("print(42)", before=f"[gsm8k-math/workflow] {rule} wrong answers."),
        "FINAL ANSWER: 42",
    ]
    result, _ = solve(loop, pool, gateway, lambda m: replies[step_no(m)], protocol="code")
    assert [(u.step, u.kind, u.ref) for u in result.section_uses] == [
        (1, "cited", "SKILL.md#gsm8k-math/workflow"),  # cited and copied: one use, the citation
        (0, "echoed", "SKILL.md#gsm8k-math/workflow"),
    ]
    # Without a skill there is nothing to echo.
    bare, _ = solve(loop, pool, gateway, lambda m: replies[step_no(m)], protocol="code", skill=None)
    assert bare.section_uses == []


def test_one_printed_value_beats_a_guess_written_before_it(loop, pool, gateway) -> None:  # noqa: F811
    result, _ = solve(
        loop,
        pool,
        gateway,
        lambda m: code("print(3 * 25 * 8)", after="FINAL ANSWER: 300"),
        protocol="code",
    )
    assert result.final_answer == "600" and len(result.steps) == 1
    assert result.steps[0].action.args == {"answer": "600"}
    from toolkit.code_protocol import output_answer

    assert output_answer("['Sweden']\n") == "Sweden"
    assert output_answer("('a', 2)") == "a | 2" and output_answer("[[1]]") == "[[1]]"
    assert output_answer("[x for x]") == "[x for x]" and output_answer("1\n2") is None
    # A label of words before the value is not the answer (a WikiTQ task submitted the line).
    assert output_answer("Total ambassadors: 9") == "9"
    assert output_answer("Answer: ['Sweden']") == "Sweden"
    assert output_answer("2:30") == "2:30" and output_answer("Chapter 5: The End") == (
        "Chapter 5: The End"
    )
    assert "the printed value (600) is submitted" in result.steps[0].observation


def test_out_of_replies_the_last_printed_value_is_submitted(loop, pool, gateway) -> None:  # noqa: F811
    replies = [code("print(6 * 7)"), "Let me think again.", code("x = 1")]
    result, _ = solve(
        loop, pool, gateway, lambda m: replies[step_no(m)], protocol="code", max_turns=3
    )
    assert result.final_answer == "42" and result.stop_reason == "submitted"
    assert "last printed value (42) is submitted" in result.steps[-1].observation
    unforced, _ = solve(
        loop,
        pool,
        gateway,
        lambda m: replies[step_no(m)],
        protocol="code",
        max_turns=3,
        force_submit=False,
    )
    assert unforced.final_answer is None and unforced.stop_reason == "max_turns"


def context_full():
    from toolkit.llm._litellm import get_litellm

    return get_litellm().ContextWindowExceededError(
        message="prompt (7190 tokens) + max_tokens (1024) exceeds the context window of 8192",
        model="fake",
        llm_provider="fake",
    )


def test_a_full_context_ends_as_out_of_replies_and_is_no_error(loop, pool, gateway) -> None:  # noqa: F811
    """Seen in the real WikiTQ run: a fifth reply overflowed the 8k context; the task ended as
    a model error, which every resume ran again to the same overflow."""
    replies = [code("print(6 * 7)"), "Let me think again.", context_full()]
    result, _ = solve(loop, pool, gateway, lambda m: replies[step_no(m)], protocol="code")
    assert result.final_answer == "42" and result.stop_reason == "submitted"
    assert result.error is None and len(result.steps) == 2
    assert "filled the model's context window: the last printed value (42)" in (
        result.steps[-1].observation
    )
    nothing = [code("x = 1"), context_full()]
    empty, _ = solve(loop, pool, gateway, lambda m: nothing[step_no(m)], protocol="code")
    assert empty.stop_reason == "context_window" and empty.final_answer is None
    assert "exceeds the context window" in (empty.error or "")


def test_a_boxed_answer_counts_when_there_is_no_answer_line(loop, pool, gateway) -> None:  # noqa: F811
    assert parse_reply("So 75 * 8 = 600.\nThe total is \\(\\boxed{600}\\).").answer == "600"
    assert parse_reply("\\boxed{1}\nFINAL ANSWER: 2").answer == "2"
    result, _ = solve(loop, pool, gateway, lambda m: "3 * 25 * 8 = \\boxed{600}", protocol="plain")
    assert result.final_answer == "600" and result.stop_reason == "submitted"


def test_submit_marker_is_read_and_removed() -> None:
    from toolkit.code_protocol import SUBMIT_MARK

    output, answer = submitted_answer(f"working\n{SUBMIT_MARK}42\n")
    assert answer == "42" and output == "working\n"
    assert submitted_answer("plain") == ("plain", None)


def test_protocol_changes_prompt_and_fingerprint() -> None:
    json_cfg, code_cfg = AgentConfig(protocol="json"), AgentConfig(protocol="code")
    assert agent_fingerprint(json_cfg) != agent_fingerprint(code_cfg)
    text = system_prompt(GSM8K_SKILL, code_cfg)
    assert "FINAL ANSWER" in text and "[gsm8k-math/workflow]" in text
    assert "JSON" not in text.split("# Skill")[0]
    progressive = system_prompt(
        GSM8K_SKILL, code_cfg.model_copy(update={"delivery": "progressive"})
    )
    assert 'read_skill("id")' in progressive and "args.section" not in progressive


# ---- the loop over the fake model and the real sandbox ---------------------------------------


def test_code_then_final_answer(loop, pool, gateway) -> None:  # noqa: F811
    def script(messages):
        if step_no(messages) == 0:
            return code("x = 6 * 7\nprint(x)")
        assert messages[-1]["content"].startswith("Output:\n42")
        return "The output shows 42.\nFINAL ANSWER: 42"

    result, model = solve(loop, pool, gateway, script, protocol="code")
    assert result.stop_reason == "submitted" and result.final_answer == "42"
    run, answer = result.steps
    assert run.action.tool == "python" and run.action.args == {"code": "x = 6 * 7\nprint(x)\n"}
    assert answer.action.tool == "submit" and answer.action.args == {"answer": "42"}
    # Plain text calls: no response schema; stop before the model invents the output.
    assert all("response_format" not in r.params for r in model.requests)
    assert all("```output" in r.params.get("stop", []) for r in model.requests)


def test_submit_inside_code_ends_even_if_code_fails_after(loop, pool, gateway) -> None:  # noqa: F811
    result, _ = solve(loop, pool, gateway, lambda m: code("submit(6 * 7)\n1 / 0"), protocol="code")
    assert result.final_answer == "42" and result.stop_reason == "submitted"
    assert "ZeroDivisionError" in result.steps[0].observation


def test_answer_next_to_failing_code_is_refused(loop, pool, gateway) -> None:  # noqa: F811
    def script(messages):
        if step_no(messages) == 0:
            return code("print(undefined_name)", after="FINAL ANSWER: 41")
        assert "not accepted" in messages[-1]["content"]
        return "FINAL ANSWER: 42"

    result, _ = solve(loop, pool, gateway, script, protocol="code")
    assert result.final_answer == "42"
    assert "NameError" in (result.steps[0].error or "")


def test_failing_code_sent_again_is_called_out(loop, pool, gateway) -> None:  # noqa: F811
    """The 1.5B resent one failing block until its replies ran out (a real WikiTQ rollout)."""
    seen: list[str] = []

    def script(messages):
        seen.append(messages[-1]["content"])
        if step_no(messages) == 2:
            return code("print(sorted(d))", after="")
        # The same code, spaced differently each time, and an answer beside it at the end.
        failing = "d = {'a': 1}\nprint(d['Goals'])" + "\n" * step_no(messages)
        return code(failing, after="FINAL ANSWER: 3" if step_no(messages) == 3 else "")

    result, _ = solve(loop, pool, gateway, script, protocol="code", max_turns=6)
    assert "KeyError: 'Goals'" in result.steps[0].observation
    assert "failed again" not in result.steps[0].observation
    assert "This is the code of your reply 1 again, and it failed again" in seen[2]
    assert "failed again" not in result.steps[2].observation  # different code, no note
    # The third send of the same failing code ends the task (no task passed after one).
    assert len(result.steps) == 4 and len(seen) == 4
    assert "failed for the third time (first in your reply 1)" in result.steps[3].observation
    assert "not accepted" not in result.steps[3].observation
    # As when out of replies, the last clean printed value stands (not the guess beside it).
    assert result.final_answer == "a" and "(a) is submitted" in result.steps[3].observation
    assert "No FINAL ANSWER before the task ended" in result.steps[3].observation


def test_stuck_task_says_so_in_its_stop_reason(loop, pool, gateway) -> None:  # noqa: F811
    # It read max_turns, though the task had replies left (a real WikiTQ evaluation).
    result, _ = solve(
        loop, pool, gateway, lambda m: code("print({}['Goals'])"), protocol="code", max_turns=6
    )
    assert len(result.steps) == 3
    assert result.stop_reason == "stuck" and result.final_answer is None


def test_common_modules_are_imported_for_the_model(loop, pool, gateway) -> None:  # noqa: F811
    # Real WikiTQ runs: code copied from a skill's example without its import hit NameError.
    reply = code("print(re.sub('a', 'b', 'a'), math.floor(2.5), json.dumps(1), pd.__name__)")
    result, _ = solve(loop, pool, gateway, lambda m: reply, protocol="code", max_turns=1)
    assert "b 2 1 pandas" in result.steps[0].observation


def test_bad_replies_become_observations(loop, pool, gateway) -> None:  # noqa: F811
    replies = [
        "I think about it.",  # no code, no answer
        code("a = 6") + code("print(a)"),  # two blocks: the first runs
        f"{FENCE}python\nprint(",  # cut off
        'read_skill("no-such-section")',  # unknown section
        "Therefore, the **FINAL ANSWER:**\n\n42",  # the label, the answer below it
        "So the FINAL ANSWER is: 42",
    ]

    def script(messages):
        return replies[step_no(messages)]

    result, model = solve(loop, pool, gateway, script, protocol="code", max_turns=6)
    assert result.final_answer == "42"
    observations = [s.observation for s in result.steps]
    assert "no ```python block and no FINAL ANSWER" in observations[0]
    assert "Only the first of your 2 code blocks ran" in observations[1]
    assert "cut off" in observations[2]
    assert observations[3].startswith("Error:")
    assert "FINAL ANSWER line had no answer on it: write the answer on the same" in observations[4]
    assert [s.error is not None for s in result.steps] == [True, False, True, True, True, False]


def test_a_reply_cut_at_max_tokens_is_told_so_and_not_used(loop, pool, gateway) -> None:  # noqa: F811
    """A trial: a reply stopped at max_tokens was told it had no code and no answer (it was
    too long), and its fragment could not be told from a reply."""
    replies = [FaultKind.TRUNCATED_JSON, code("print(6 * 7)"), "FINAL ANSWER: 42"]

    def script(messages):
        return replies[step_no(messages)]

    result, model = solve(loop, pool, gateway, script, protocol="code", max_tokens=128)
    assert result.final_answer == "42" and len(result.steps) == 3
    cut = result.steps[0]
    assert cut.error == "reply cut at max_tokens (128 tokens)" and cut.action.tool == "respond"
    assert cut.observation.startswith("Your reply stopped at the max_tokens limit (128 tokens)")
    assert "no ```python block" not in cut.observation
    assert model.requests[1].messages[-1]["content"].startswith(cut.observation)
    # A cut reply spends no check: the answer before any code would still be sent back.
    only_cut, _ = solve(
        loop, pool, gateway, lambda m: FaultKind.TRUNCATED_JSON, protocol="code", max_turns=2
    )
    assert only_cut.final_answer is None and only_cut.stop_reason == "max_turns"
    assert all("max_tokens" in (s.error or "") for s in only_cut.steps)


def test_skill_reads_are_recorded(loop, pool, gateway) -> None:  # noqa: F811
    def script(messages):
        if step_no(messages) == 0:
            return 'First the workflow.\nread_skill("gsm8k-math/workflow")'
        assert "Skill gsm8k-math/workflow:" in messages[-1]["content"]
        return "FINAL ANSWER: 42"

    result, _ = solve(loop, pool, gateway, script, protocol="code", delivery="progressive")
    assert [(u.kind, u.ref) for u in result.section_uses] == [
        ("read", "SKILL.md#gsm8k-math/workflow")
    ]
    assert result.steps[0].action.tool == "read_skill_file"


def test_no_answer_by_the_last_turn_stops(loop, pool, gateway) -> None:  # noqa: F811
    result, model = solve(
        loop, pool, gateway, lambda m: code("x = 1"), protocol="code", max_turns=3
    )
    assert result.stop_reason == "max_turns" and result.final_answer is None
    assert "(last)" in model.requests[-1].messages[-1]["content"]


# ---- the plain condition -----------------------------------------------------------------------


def test_plain_is_one_call_with_files_inlined_and_no_tools(loop, pool, gateway) -> None:  # noqa: F811
    def script(messages):
        assert (
            len(messages) == 2 and "File table.csv:\nyear,count\n2001,5" in messages[1]["content"]
        )
        return "Count in 2001 is 5, so 6 * 7 = 42.\nFINAL ANSWER: 42"

    result, model = solve(
        loop, pool, gateway, script, protocol="plain", files={"table.csv": "year,count\n2001,5\n"}
    )
    assert result.final_answer == "42" and result.stop_reason == "submitted"
    assert len(model.requests) == 1 and result.steps[0].action.args == {"answer": "42"}
    assert "FINAL ANSWER" in model.requests[0].messages[0]["content"]
    # The format is said again after the files (a long table buried the system prompt's).
    assert (
        model.requests[0]
        .messages[1]["content"]
        .endswith("end with a line: FINAL ANSWER: <the answer only>")
    )


def test_plain_without_answer_line_answers_with_its_last_line(loop, pool, gateway) -> None:  # noqa: F811
    result, _ = solve(
        loop,
        pool,
        gateway,
        lambda m: "6 * 7 = 42\n\nTherefore, the product is **42**.\n",
        protocol="plain",
    )
    assert result.final_answer == "Therefore, the product is **42**"
    assert result.stop_reason == "submitted" and "last line" in result.steps[0].observation
    empty, _ = solve(loop, pool, gateway, lambda m: "  \n", protocol="plain")
    assert empty.final_answer is None and empty.stop_reason == "max_turns"
    assert empty.steps[0].error == "no answer (an empty reply)"


def test_plain_answers_from_lines_outside_code() -> None:
    """A trial: a plain reply that was only a code block answered with its closing fence."""
    only_code = f"{FENCE}python\nprint(540)\n{FENCE}"
    assert plain_answer(only_code).answer is None
    after = plain_answer(f"So it is 540.\n{FENCE}python\nprint(540)\n{FENCE}\n")
    assert after.answer == "So it is 540" and after.from_last_line
    boxed = plain_answer("3 * 25 * 8 = \\boxed{600}")
    assert boxed.answer == "600" and not boxed.from_last_line
    # A reply cut at max_tokens: its last line is where the limit fell, never the answer; a
    # FINAL ANSWER line before it stands.
    assert plain_answer("6 * 7 = 42\nso the product of", cut=True).answer is None
    assert plain_answer("FINAL ANSWER: 42\nLet me check: 6 * ", cut=True).answer == "42"
    assert plain_answer("FINAL ANSWER: 4", cut=True).answer is None  # 42, 420...?


def test_plain_with_only_code_or_cut_has_no_answer(loop, pool, gateway) -> None:  # noqa: F811
    only_code, _ = solve(
        loop, pool, gateway, lambda m: f"{FENCE}python\nprint(540)\n{FENCE}", protocol="plain"
    )
    assert only_code.final_answer is None and only_code.stop_reason == "max_turns"
    assert only_code.steps[0].error == "no answer (no line outside code blocks)"
    assert "last line" not in only_code.steps[0].observation
    cut, _ = solve(loop, pool, gateway, lambda m: FaultKind.TRUNCATED_JSON, protocol="plain")
    assert cut.final_answer is None and cut.stop_reason == "max_turns"
    assert cut.steps[0].error == "reply cut at max_tokens (1024 tokens)"
    assert "max_tokens limit (1024 tokens)" in cut.steps[0].observation


def test_a_key_error_lists_the_columns_of_the_session_tables(loop, pool, gateway) -> None:  # noqa: F811
    # A real WikiTQ evaluation: 21 of 78 tasks failed on the skill example's column 'Goals'
    # and most resent the same code; the table's own columns are what the model lacked.
    frame = "df = pd.DataFrame({'Pick #': [1], 'Nationality': ['Finland']})\n"
    replies = iter(
        [
            code(frame + "print(df['Goals'])"),
            code("d = {'a': 1}\nprint(d['b'])"),  # no DataFrame named by the error's code
            "FINAL ANSWER: 1",
        ]
    )
    result, _ = solve(loop, pool, gateway, lambda m: next(replies), protocol="code")
    first = result.steps[0].observation
    assert "KeyError: 'Goals'" in first
    assert "df: ['Pick #', 'Nationality']" in first and "use these exact names" in first
    assert result.steps[0].error == "KeyError: 'Goals'"  # the error itself is unchanged
    # The session still holds df, so a later KeyError lists it too; without pandas frames
    # (a fresh session) nothing is added, as the next test shows.
    assert "df: ['Pick #', 'Nationality']" in result.steps[1].observation


def test_a_final_answer_label_inside_code_is_named_after_its_syntax_error(
    loop,  # noqa: F811
    pool,  # noqa: F811
    gateway,  # noqa: F811
) -> None:
    # A real WikiTQ task sent print(FINAL ANSWER: {n}) three times, reading the error as a
    # problem with its braces, and ended `stuck`.
    replies = iter([code("n = 6\nprint(FINAL ANSWER: {n})"), code("print(n)"), "FINAL ANSWER: 6"])
    result, _ = solve(loop, pool, gateway, lambda m: next(replies), protocol="code")
    first = result.steps[0].observation
    assert "SyntaxError" in first and "FINAL ANSWER is not python" in first
    assert result.final_answer == "6"
    # Other syntax errors get no such note.
    assert label_in_code_hint("print(1", "SyntaxError") == ""
    assert label_in_code_hint("x = 'FINAL ANSWER: 1'\nprint(x[99])", "IndexError") == ""


def test_a_key_error_without_a_dataframe_lists_the_csv_header(loop, pool, gateway) -> None:  # noqa: F811
    # A real WikiTQ task read the table with csv.DictReader and asked for a column it does not
    # have: no DataFrame, so no note, and it resent the same code to the turn limit.
    reader = "import csv\nrows = list(csv.DictReader(open('table.csv')))\n"
    replies = iter([code(reader + "print(rows[0]['Route Length (km)'])"), "FINAL ANSWER: 1"])
    result, _ = solve(
        loop,
        pool,
        gateway,
        lambda m: next(replies),
        protocol="code",
        files={"table.csv": "Route,Length (miles)\n128,9\n"},
    )
    first = result.steps[0].observation
    assert "KeyError" in first and "table.csv: ['Route', 'Length (miles)']" in first


def test_other_errors_and_frameless_key_errors_get_no_column_note(loop, pool, gateway) -> None:  # noqa: F811
    replies = iter([code("d = {'a': 1}\nprint(d['b'])"), code("print(1 / 0)"), "FINAL ANSWER: 1"])
    result, _ = solve(loop, pool, gateway, lambda m: next(replies), protocol="code")
    assert "KeyError: 'b'" in result.steps[0].observation
    assert "ZeroDivisionError" in result.steps[1].observation
    assert not any("exact names" in s.observation for s in result.steps)
