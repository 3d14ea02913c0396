"""Benchmark the skill parser and the patch engine.

Workload (seeded RNG): a SKILL.md of about 480 lines in 40 sections (with fenced code
blocks) and 3 references; a consolidated patch of E edits spread over distinct sections
(append / insert_after / replace_in_section / add_section), as a final merged patch would be.

Figures:
  parse_ms        median time to parse SKILL.md into sections
  load_ms         median time of load_skill on the folder written to a temp dir
  apply_ms        median time of apply_patch (all guardrails + result validation)
  diff_ms         median time to render the unified diff
  edits_per_s     E / apply time

Usage: ``python benchmarks/patch_engine.py [--edits E] [--seed S] [--rounds R]``. The last line
printed is one JSON object with these keys.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from toolkit.patch import apply_patch, parse_patch
from toolkit.skill import Skill, load_skill, parse_markdown

WORDS = [
    "data",
    "column",
    "value",
    "total",
    "average",
    "check",
    "unit",
    "row",
    "file",
    "sum",
    "date",
    "mean",
]


def sentence(rng: random.Random, tag: str) -> str:
    return f"{tag} " + " ".join(rng.choice(WORDS) for _ in range(8)) + "."


def build_skill(rng: random.Random) -> dict[str, str]:
    parts = ["---\nname: bench\ndescription: Benchmark skill.\n---\n\n# Bench\n\n"]
    for index in range(40):
        parts.append(f"## Section {index}\n\n")
        for line in range(6):
            parts.append(f"- {sentence(rng, f's{index}l{line}')}\n")
        if index % 4 == 0:
            parts.append(f"\n```bash\npython step{index}.py\n# not a heading\n```\n")
        parts.append("\n")
    links = "".join(f"- [Ref {i}](references/ref{i}.md)\n" for i in range(3))
    parts.append(f"## References\n\n{links}")
    files = {"SKILL.md": "".join(parts)}
    for i in range(3):
        body = "".join(f"{sentence(rng, f'r{i}l{n}')}\n" for n in range(200))
        files[f"references/ref{i}.md"] = f"# Ref {i}\n\n{body}"
    return files


def build_patch(rng: random.Random, edits: int) -> dict[str, object]:
    out: list[dict[str, str]] = []
    sections = rng.sample(range(40), min(edits, 40))
    for number, index in enumerate(sections):
        op = rng.choice(["append_to_section", "insert_after", "replace_in_section", "add_section"])
        content = f"- added {number}: " + " ".join(rng.choice(WORDS) for _ in range(6))
        line = f"s{index}l{rng.randrange(6)}"
        if op == "append_to_section":
            edit = {"op": op, "target_section": f"Section {index}", "content": content}
        elif op == "insert_after":
            edit = {"op": op, "target_section": f"Section {index}", "target_text": line,
                    "content": content}  # fmt: skip
        elif op == "replace_in_section":
            edit = {"op": op, "target_section": f"Section {index}", "old_text": line,
                    "content": f"x{line}"}  # fmt: skip
        else:
            edit = {"op": op, "after_section": f"Section {index}",
                    "content": f"## Added {number}\n\n{content}\n"}  # fmt: skip
        out.append({"file": "SKILL.md", **edit})
    return {"reasoning": "benchmark", "edits": out, "changelog_entries": []}


def median_ms(func: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    files = build_skill(rng)
    patch = parse_patch(build_patch(rng, args.edits))
    skill = Skill.from_files("bench", files)

    result = apply_patch(skill, patch)
    assert result.clean, [r.message for r in result.rejected] + [i.message for i in result.issues]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bench"
        for path, text in files.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(text)
        load = median_ms(lambda: load_skill(folder), args.rounds)

    figures = {
        "skill_md_lines": files["SKILL.md"].count("\n"),
        "edits": len(patch.edits),
        "parse_ms": round(median_ms(lambda: parse_markdown(files["SKILL.md"]), args.rounds), 3),
        "load_ms": round(load, 3),
        "apply_ms": round(median_ms(lambda: apply_patch(skill, patch), args.rounds), 3),
        "diff_ms": round(median_ms(result.diff, args.rounds), 3),
    }
    figures["edits_per_s"] = round(len(patch.edits) / (figures["apply_ms"] / 1000), 1)
    for key, value in figures.items():
        print(f"{key:>16}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
