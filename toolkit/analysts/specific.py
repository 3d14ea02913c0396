"""The task-specific filter: a lesson must not be about one task's data.

Small analysts write lessons that only fit the table they just saw: the embedded 1.5B added
"Print the number of times the Award 'Best Actor: Drama' has been nominated." and a pitfall
about filtering 'brazil' (`runs/example-wikitq`). Such a line helps no other task and costs
every later one its length. :func:`task_literals` finds them by what they quote: a quoted
text ('...', "...", “...” or a `code span`) of at least 4 characters with a letter in it,
found in the task's own input files (case-insensitive, on word boundaries) and nowhere in
the skill. The question is not searched: a method may well quote a phrase such questions use
('per week'); only the task's data makes a quote specific. Tasks without text files (GSM8K)
are never filtered.

Names need no quotes: the real WikiTQ run's first kept lesson was code comparing
``bo_grahn_date``, for the athlete Bo Grahn of the table it analysed. :func:`task_names`
finds the task's proper names (cells of two or more capitalised words, e.g. "Bo Grahn",
"Best Actor: Drama") in an edit, written any way (``bo_grahn``, "bo grahn"), unless the
skill has them too.

Nor capitals: lower-case questions are copied lower case. The real run's single-call analyst
kept "call `submit` with the name of the team that beat mercury in their only 2OT game" for
"who did the mercury beat in their only 2ot game?". :func:`question_phrases` finds four or
more words in a row of the question, one of them a word neither common in questions nor in
the skill.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from toolkit.tasks import Task

#: Shortest quoted text that counts (shorter ones, 'N/A', 'nan', occur in any table).
MIN_LITERAL_CHARS = 4
#: Most characters of a task's files searched (a larger file is searched up to here).
MAX_TASK_TEXT_CHARS = 2_000_000
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl", ".md", ".html", ".htm", ".xml")
# A quote opens and closes off a word, so apostrophes ("the agent's code doesn't") are no quote.
# Backticks too: the real WikiTQ run's 1.5B wrote "The `Country`, `Goals`, and `Metropolitan
# area` columns are assumed to be present" (code spans such as `df.columns` are in no table).
_QUOTED = re.compile(
    r"(?<!\w)'([^'\n]{1,120})'(?!\w)|(?<!\w)\"([^\"\n]{1,120})\"(?!\w)|“([^”\n]{1,120})”"
    r"|`([^`\n]{1,120})`"
)


def quoted_texts(content: str) -> list[str]:
    """The quoted texts of ``content`` that could name a value: >= 4 characters, a letter.
    A code span counts whole and for the quotes inside it: the real WikiTQ run kept
    "`sel = df[(df['Subject'] == 'Encyclicals')]`", a code span no table holds whole."""
    found = []
    for match in _QUOTED.finditer(content):
        text = next(group for group in match.groups() if group is not None).strip()
        if len(text) >= MIN_LITERAL_CHARS and any(ch.isalpha() for ch in text):
            found.append(text)
        if match.group(4) is not None:  # a `code span`: the quotes it holds
            found += [t for t in quoted_texts(match.group(4)) if t != text]
    return found


#: Cells searched for names: two or more words, each capitalised, 5 to 60 characters.
_CELL = re.compile(r"[^,\t|\n]{5,60}")
_WORD = re.compile(r"[^\W\d_]+")


def _words(text: str) -> str:
    """Lower-case words joined by single spaces, padded (``bo_grahn_date`` -> " bo grahn date ")."""
    return " " + " ".join(re.findall(r"[^\W_]+", text.lower())) + " "


def data_names(data_text: str) -> set[str]:
    """The proper names among the cells of a task's data, as :func:`_words` writes them."""
    names = set()
    for match in _CELL.finditer(data_text):
        cell = match.group().strip().strip('"').strip()
        words = _WORD.findall(cell)
        if len(words) >= 2 and all(w[0].isupper() for w in words):
            names.add(_words(cell))
    return names


def task_names(content: str, data_text: str, skill_texts: Iterable[str]) -> list[str]:
    """The proper names of the task's data (:func:`data_names`) that ``content`` writes, in
    any case or spelling of the gaps between words, and the skill does not."""
    if not data_text:
        return []
    text, skill = _words(content), _words(" ".join(skill_texts))
    found = [n.strip() for n in data_names(data_text) if n in text and n not in skill]
    return sorted(found)


def task_text(task: Task) -> str:
    """The text of ``task``'s input files (text formats only), for :func:`task_literals`."""
    parts: list[str] = []
    for file in task.files:
        if not file.path.lower().endswith(_TEXT_SUFFIXES):
            continue
        if file.text is not None:
            parts.append(file.text)
        elif file.data is not None:
            parts.append(file.data.decode("utf-8", errors="replace"))
        elif file.source is not None:
            try:
                with Path(file.source).open(encoding="utf-8", errors="replace") as handle:
                    parts.append(handle.read(MAX_TASK_TEXT_CHARS))
            except OSError:
                continue  # an unreadable file only means fewer quotes are recognised
    return "\n".join(parts)[:MAX_TASK_TEXT_CHARS]


def task_literals(content: str, data_text: str, skill_texts: Iterable[str]) -> list[str]:
    """The quoted texts of ``content`` that come from the task's data, not from the skill.

    Args:
        content: an edit's new text.
        data_text: the task's input files (:func:`task_text`); empty means nothing is found.
        skill_texts: the skill's markdown texts (a quote the skill already uses is its own).
    """
    if not data_text:
        return []
    skill = " ".join(skill_texts).lower()
    found = []
    for text in quoted_texts(content):
        if text.lower() in skill or text in found:
            continue
        if re.search(r"(?<!\w)" + re.escape(text) + r"(?!\w)", data_text, re.IGNORECASE):
            found.append(text)
    return found


# Capitalised words in a lesson's text; a run of two or more is a candidate name.
_CAPITALISED_RUN = re.compile(r"\b[A-Z][\w'.-]*(?:[ \t]+[A-Z][\w'.-]*)+")
# Capitalised at a sentence's or a heading's start, not because they name something.
_COMMON = frozenset(
    {
        "a",
        "an",
        "and",
        "at",
        "by",
        "check",
        "do",
        "else",
        "first",
        "for",
        "from",
        "if",
        "in",
        "is",
        "it",
        "its",
        "note",
        "of",
        "on",
        "or",
        "print",
        "step",
        "the",
        "then",
        "this",
        "to",
        "use",
        "when",
        "where",
        "which",
        "with",
    }
)


def question_names(content: str, question: str, skill_texts: Iterable[str]) -> list[str]:
    """The names from ``question`` that ``content`` writes capitalised, and the skill does not.

    WikiTQ questions are lower case ("what was galina chistyakova's last competition?"), so
    a name the task asks about is not in its table's cells (:func:`task_names`) and a lesson
    writes it capitalised: 'Galina Chistyakova', from the real run's 1.5B analyst. A run of
    two or more capitalised words of ``content`` (common words such as "The" end a run) whose
    words, any two or more in a row, occur in the question in that order counts. Capitalised
    phrases the question does not hold ('Look Before Filtering') are no name.
    """
    if not question:
        return []
    asked, skill = _words(question), _words(" ".join(skill_texts))
    found: list[str] = []
    for match in _CAPITALISED_RUN.finditer(content):
        # Split the run at common words; each piece may hold a name.
        pieces: list[list[str]] = [[]]
        for word in (w.strip("'.-") for w in match.group().split()):
            if not word or word.lower() in _COMMON:
                pieces.append([])
            else:
                pieces[-1].append(word)
        for piece in pieces:
            phrase = _asked_phrase(piece, asked, skill)
            if phrase is not None and phrase not in found:
                found.append(phrase)
    return found


def _asked_phrase(words: list[str], asked: str, skill: str) -> str | None:
    """The longest run of two or more of ``words`` that the question (``asked``, as
    :func:`_words` writes it) holds and the skill does not."""
    for size in range(len(words), 1, -1):
        for start in range(len(words) - size + 1):
            phrase = " ".join(words[start : start + size])
            spaced = _words(phrase)
            if spaced in asked and spaced not in skill:
                return phrase
    return None


#: Shortest run of the question's words, in a row, that an edit may not copy.
MIN_QUESTION_WORDS = 4
# Words any table question has; a copied run made of them (and of the skill's words) is the
# shape of a question type ('how many times did the'), not this task's subject.
_ASKING = frozenset(
    {
        "after", "are", "before", "between", "both", "can", "could", "did", "does", "each",
        "had", "has", "have", "how", "least", "less", "many", "more", "most", "much", "name",
        "not", "number", "one", "only", "other", "same", "than", "that", "their", "there",
        "they", "times", "total", "two", "was", "were", "what", "which", "who", "whom",
        "whose", "year", "years",
    }
)  # fmt: skip


def question_phrases(content: str, question: str, skill_texts: Iterable[str]) -> list[str]:
    """Runs of :data:`MIN_QUESTION_WORDS` or more words of ``question``, in a row, that
    ``content`` writes (any case, any gaps) and that hold a word of three or more characters
    neither common in questions nor in the skill: the subject of this one question."""
    if not question:
        return []
    asked = _words(question).split()
    text = _words(content)
    known = set(_words(" ".join(skill_texts)).split()) | _COMMON | _ASKING
    found: list[str] = []
    start = 0
    while start <= len(asked) - MIN_QUESTION_WORDS:
        end = start + MIN_QUESTION_WORDS
        if " " + " ".join(asked[start:end]) + " " not in text:
            start += 1
            continue
        while end < len(asked) and " " + " ".join(asked[start : end + 1]) + " " in text:
            end += 1  # the longest copied run from here
        run = asked[start:end]
        if any(len(w) >= 3 and w not in known for w in run):
            found.append(" ".join(run))
        start = end
    return found
