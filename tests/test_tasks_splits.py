import json
import shutil

import pytest

from toolkit.errors import ToolkitNotice
from toolkit.tasks import (
    DATA_DIR_ENV,
    SUITES,
    VENDORED_DATA_DIR,
    SplitsFile,
    TaskError,
    datadir,
    get_suite,
    hash_split,
    load_splits,
    make_splits,
    resolve_data_dir,
    save_splits,
    tasks_for_split,
)


def test_registry_lists_suites_and_rejects_unknown():
    assert set(SUITES) == {"wikitq", "gsm8k", "spreadsheet", "jsonl"}
    with pytest.raises(TaskError, match="valid suites: wikitq, gsm8k, spreadsheet, jsonl"):
        get_suite("mmlu")
    with pytest.raises(TaskError, match="no option.*colour.*valid options: data_dir, file"):
        get_suite("wikitq", colour="red")


@pytest.mark.parametrize("name", ["wikitq", "gsm8k", "spreadsheet"])
def test_unknown_split_lists_valid_ones(name):
    suite = get_suite(name, data_dir=VENDORED_DATA_DIR)
    with pytest.raises(TaskError, match="valid splits: train, test, all"):
        suite.load("validation")


def test_a_limit_beyond_the_bundled_slice_says_where_the_full_benchmark_is():
    suite = get_suite("wikitq", data_dir=VENDORED_DATA_DIR)
    available = len(suite.load("test").tasks)
    with pytest.warns(ToolkitNotice) as caught:
        splits = make_splits(suite, {"test": available + 5, "train": 2}, seed=0)
    assert len(splits.splits["test"]) == available and len(splits.splits["train"]) == 2
    [notice] = caught
    text = str(notice.message)
    assert f"has {available} tasks in {VENDORED_DATA_DIR}" in text
    assert "the bundled slice; --data" in text and f"the {available + 5} asked for" in text


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir(tmp_path) == tmp_path.resolve()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert resolve_data_dir() == tmp_path.resolve()
    assert resolve_data_dir(VENDORED_DATA_DIR) == VENDORED_DATA_DIR  # parameter wins
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(TaskError, match=DATA_DIR_ENV):
        resolve_data_dir()
    with pytest.raises(TaskError, match="data_dir parameter"):
        resolve_data_dir(tmp_path / "nope")
    monkeypatch.delenv(DATA_DIR_ENV)
    monkeypatch.setattr(datadir, "SHARED_DATA_DIR", tmp_path / "no-shared")
    assert resolve_data_dir() == VENDORED_DATA_DIR  # a fresh clone uses the vendored slice
    monkeypatch.setattr(datadir, "SHARED_DATA_DIR", tmp_path)
    assert resolve_data_dir() == tmp_path


def test_hash_split_is_stable_and_balanced():
    assert hash_split("gsm8k-test-0") == hash_split("gsm8k-test-0")
    labels = [hash_split(f"task-{i}") for i in range(2000)]
    assert 900 < labels.count("train") < 1100
    assert {hash_split(f"t{i}", train_fraction=1.0) for i in range(50)} == {"train"}


@pytest.mark.parametrize("name", ["wikitq", "gsm8k", "spreadsheet"])
def test_seeded_limit_is_reproducible(name):
    suite = get_suite(name, data_dir=VENDORED_DATA_DIR)
    full = suite.load("all").ids
    a = suite.load("all", limit=2, seed=1).ids
    assert a == suite.load("all", limit=2, seed=1).ids
    assert len(a) == 2 and set(a) <= set(full)
    assert [i for i in full if i in a] == a  # kept in data order
    seeds = {tuple(suite.load("all", limit=2, seed=s).ids) for s in range(10)}
    assert len(seeds) > 1  # the seed matters
    assert suite.load("all", limit=100).ids == full
    with pytest.raises(TaskError, match="limit"):
        suite.load("all", limit=-1)


def test_splits_disjoint_saved_and_reloaded(tmp_path):
    suite = get_suite("wikitq", data_dir=VENDORED_DATA_DIR)
    splits = make_splits(suite, {"train": 8, "test": None}, seed=3, data_root=VENDORED_DATA_DIR)
    assert len(splits.splits["train"]) == 8 and len(splits.splits["test"]) == 10
    assert not set(splits.splits["train"]) & set(splits.splits["test"])
    assert list(splits.source_hashes) == ["wikitablequestions/wtq_subset.jsonl"]
    path = tmp_path / "run" / "splits.json"
    save_splits(splits, path)
    assert json.loads(path.read_text())["schema_version"] == 1
    again = load_splits(path)
    assert again == splits
    save_splits(again, tmp_path / "copy.json")
    assert (tmp_path / "copy.json").read_bytes() == path.read_bytes()
    tasks = tasks_for_split(suite, again, "train", data_root=VENDORED_DATA_DIR)
    assert [t.id for t in tasks] == splits.splits["train"]
    assert [p.name for p in tmp_path.joinpath("run").iterdir()] == ["splits.json"]  # no temp left


def test_overlapping_splits_are_refused(tmp_path):
    suite = get_suite("gsm8k", data_dir=VENDORED_DATA_DIR)
    with pytest.raises(TaskError, match="not disjoint"):
        make_splits(suite, {"train": None, "all": None})
    with pytest.raises(ValueError, match="both split"):
        SplitsFile(suite="x", seed=0, limits={}, splits={"a": ["1"], "b": ["1"]}, source_hashes={})
    bad = tmp_path / "splits.json"
    bad.write_text(
        json.dumps(
            {
                "suite": "x",
                "seed": 0,
                "limits": {},
                "source_hashes": {},
                "splits": {"a": ["1", "1"]},
            }
        )
    )
    with pytest.raises(TaskError, match="invalid splits file"):
        load_splits(bad)
    bad.write_text("{")
    with pytest.raises(TaskError, match="cannot read"):
        load_splits(bad)
    with pytest.raises(TaskError, match="not found"):
        load_splits(tmp_path / "none.json")


def test_changed_data_is_detected(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(VENDORED_DATA_DIR / "gsm8k", root / "gsm8k")
    suite = get_suite("gsm8k", data_dir=root)
    splits = make_splits(suite, {"train": None, "test": None}, data_root=root)
    assert tasks_for_split(suite, splits, "test", data_root=root)
    with pytest.raises(TaskError, match="no split 'dev'"):
        tasks_for_split(suite, splits, "dev", data_root=root)
    with pytest.raises(TaskError, match="suite 'gsm8k'"):
        tasks_for_split(get_suite("wikitq", data_dir=VENDORED_DATA_DIR), splits, "test")
    data = root / "gsm8k" / "gsm8k_test300.jsonl"
    data.write_text(data.read_text().replace("Janet", "Jane"))
    # It names evolve's option too: "choose another --run-dir" sent an evolve user (whose
    # command has --run-id) looking for an option that is not there (a trial's finding).
    with pytest.raises(TaskError, match=r"changed since.*\(--run-dir; evolve: --run-id\)"):
        tasks_for_split(suite, splits, "test", data_root=root)


def test_load_ids_reports_missing():
    suite = get_suite("gsm8k", data_dir=VENDORED_DATA_DIR)
    assert [t.id for t in suite.load_ids(["gsm8k-test-2", "gsm8k-test-0"])] == [
        "gsm8k-test-2",
        "gsm8k-test-0",
    ]
    with pytest.raises(TaskError, match="1 task id"):
        suite.load_ids(["gsm8k-test-0", "nope"])


def test_tasks_serialise_round_trip(tmp_path):
    from toolkit.tasks import Task, TaskFile

    task = get_suite("wikitq", data_dir=VENDORED_DATA_DIR).load("test", limit=1).tasks[0]
    assert Task.model_validate_json(task.model_dump_json()) == task
    binary = TaskFile(path="a/b.bin", data=b"\x00\xff")
    assert TaskFile.model_validate_json(binary.model_dump_json()) == binary
    binary.write(tmp_path)
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\xff"
    for bad in ("../x", "/abs", "", "a\\b"):
        with pytest.raises(ValueError):
            TaskFile(path=bad, text="x")
    with pytest.raises(ValueError, match="exactly one"):
        TaskFile(path="x", text="a", data=b"b")
    with pytest.raises(TaskError, match="missing"):
        TaskFile(path="x", source=str(tmp_path / "gone")).write(tmp_path)
