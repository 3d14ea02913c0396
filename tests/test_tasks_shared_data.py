"""Checks on the full shared data folder (../shared/data); the core tests use the vendored slice."""

import pytest

from toolkit.tasks import get_suite
from toolkit.tasks.datadir import SHARED_DATA_DIR

pytestmark = pytest.mark.skipif(
    not SHARED_DATA_DIR.is_dir(), reason="../shared/data is not present (fresh clone)"
)


def test_full_wikitq_loads_and_every_gold_scores_itself():
    suite = get_suite("wikitq", data_dir=SHARED_DATA_DIR)
    result = suite.load("all")
    assert len(result.tasks) == 600 and not result.bad_rows
    assert len(suite.load("train").tasks) == 400 and len(suite.load("test").tasks) == 200
    failures = [
        t.id
        for t in result.tasks
        if not suite.score(t, t.answers).passed
        or not suite.score(t, t.metadata["answers_canon"]).passed
    ]
    assert failures == []


def test_full_gsm8k_and_spreadsheet_load_without_bad_rows():
    gsm = get_suite("gsm8k", data_dir=SHARED_DATA_DIR).load("all")
    assert len(gsm.tasks) == 300 and not gsm.bad_rows
    sheets = get_suite("spreadsheet", data_dir=SHARED_DATA_DIR, recalculate="never").load("all")
    assert len(sheets.tasks) == 100 and not sheets.bad_rows
