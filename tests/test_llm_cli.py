"""`trace2skill llm ...` through click's CliRunner, on the fake model."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from toolkit.cli import main
from toolkit.cli.llm import llm_options
from toolkit.llm import LLMConfig, fake_model, read_calls


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("TRACE2SKILL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TRACE2SKILL_MODEL", raising=False)
    return CliRunner()


def test_ask_prints_reply(runner: CliRunner) -> None:
    result = runner.invoke(main, ["llm", "ask", "hello there", "--model", "fake/echo"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello there\n"
    empty = runner.invoke(main, ["llm", "ask", " ", "--model", "fake/echo"])
    assert empty.exit_code == 1 and "the prompt is empty" in empty.output


def test_ask_with_system_and_no_cache(runner: CliRunner) -> None:
    with fake_model(lambda m: f"{m[0]['content']}|{m[1]['content']}") as model:
        args = ["llm", "ask", "q", "--system", "S", "--model", model, "--no-cache"]
        assert runner.invoke(main, args).output == "S|q\n"
        assert runner.invoke(main, args).exit_code == 0
        assert model.calls == 2


def test_ask_json_schema_patch(runner: CliRunner) -> None:
    patch = {
        "reasoning": "clarify",
        "edits": [
            {
                "file": "SKILL.md",
                "op": "append_to_section",
                "target_section": "Usage",
                "content": "Check units.",
            }
        ],
        "changelog_entries": ["add a units check"],
    }
    with fake_model(["not json at all", json.dumps(patch)]) as model:
        result = runner.invoke(
            main, ["llm", "ask", "improve", "--json-schema", "patch", "--model", model]
        )
        assert model.calls == 2  # one repair round
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["edits"][0]["op"] == "append_to_section"
    assert out["changelog_entries"] == ["add a units check"]


def test_ask_says_when_the_reply_was_cut_at_max_tokens(runner: CliRunner) -> None:
    """Found by a trial: a reply stopped at max_tokens (finish_reason "length") was printed
    as if whole: exit 0 and nothing on stderr."""
    from toolkit.llm import FaultKind

    with fake_model([FaultKind.TRUNCATED_JSON, "whole"]) as model:
        args = ["llm", "ask", "q", "--model", model, "--no-cache", "--max-tokens", "5"]
        cut = runner.invoke(main, args)
        whole = runner.invoke(main, args)
    assert cut.exit_code == 0, cut.output
    assert cut.stderr == (
        "Note: the reply was cut at the token limit (max_tokens 5); "
        "raise it with --max-tokens N for the whole reply.\n"
    )
    assert cut.stdout and "Note" not in cut.stdout
    assert whole.stdout == "whole\n" and whole.stderr == ""


def test_ask_permanent_error_is_one_line(runner: CliRunner) -> None:
    from toolkit.llm import FaultKind

    with fake_model([FaultKind.AUTH]) as model:
        result = runner.invoke(main, ["llm", "ask", "q", "--model", model])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "AuthenticationError" in result.output


def test_calls_summary(runner: CliRunner, tmp_path: Path) -> None:
    from toolkit.llm import Gateway

    log = tmp_path / "run" / "llm_calls.jsonl"
    gw = Gateway(LLMConfig(cache_dir=tmp_path / "c", calls_log=log, model="fake/echo"))
    gw.complete("a")
    gw.complete("a")
    gw.complete("b")
    gw.close()
    assert len(read_calls(log)) == 3
    result = runner.invoke(main, ["llm", "calls", str(log.parent)])
    assert result.exit_code == 0, result.output
    rows = dict(line.rsplit(None, 1) for line in result.output.splitlines())
    assert rows["calls"] == "3" and rows["cache hits"] == "1" and rows["model requests"] == "2"
    as_json = json.loads(runner.invoke(main, ["llm", "calls", str(log), "--json"]).output)
    assert as_json["calls"] == 3 and as_json["model_requests"] == 2


def test_calls_bad_file_is_clear(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "llm_calls.jsonl"
    bad.write_text('{"not": "a record"}\n')
    result = runner.invoke(main, ["llm", "calls", str(bad)])
    assert result.exit_code == 1 and "llm_calls.jsonl:1: not an LLM call record" in result.output
    (tmp_path / "empty").mkdir()
    missing = runner.invoke(main, ["llm", "calls", str(tmp_path / "empty")])
    assert missing.exit_code == 1 and "no calls log" in missing.output


def test_llm_options_builds_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACE2SKILL_MODEL", "fake/from-env")
    seen: list[LLMConfig] = []

    @click.command()
    @llm_options
    def cmd(llm_config: LLMConfig) -> None:
        seen.append(llm_config)

    runner = CliRunner()
    assert runner.invoke(cmd, []).exit_code == 0
    args = ["--model", "fake/x", "--no-cache", "--cache-dir", str(tmp_path), "--concurrency", "3"]
    assert runner.invoke(cmd, args).exit_code == 0
    assert seen[0].model == "fake/from-env" and seen[0].cache is True
    assert seen[1].model == "fake/x" and seen[1].cache is False
    assert seen[1].cache_dir == tmp_path and seen[1].concurrency == 3


def test_help_has_examples(runner: CliRunner) -> None:
    for args in (["llm"], ["llm", "ask"], ["llm", "calls"]):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0 and "trace2skill llm" in result.output


def test_ctrl_c_in_a_short_command_exits_130(runner: CliRunner) -> None:
    """Found by a new-user trial: `llm ask` stopped by Ctrl-C said "Aborted!" and exited 1,
    where the long commands say "Interrupted." and exit 130."""

    def stop(_messages: object) -> str:
        raise KeyboardInterrupt

    with fake_model(stop) as model:
        result = runner.invoke(main, ["llm", "ask", "q", "--model", model, "--no-cache"])
    assert result.exit_code == 130 and "Interrupted." in result.output
    assert "Aborted" not in result.output
