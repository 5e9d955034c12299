import json

import datasets
import pytest

from nemo_beyond_nll.data.sources import open_rows

from .fixtures import numina_rows, write_jsonl


def test_jsonl_keeps_broken_lines_as_none_and_skips_blank_ones(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}, "{broken", "", "[1, 2]", {"a": 2}])
    rows, total = open_rows(path)
    assert list(rows) == [{"a": 1}, None, [1, 2], {"a": 2}] and total is None


def test_json_list_and_data_mapping(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([{"a": 1}, 5]))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": [{"a": 1}]}))
    (tmp_path / "scalar.json").write_text("3")
    (tmp_path / "broken.json").write_text("[{")
    rows, total = open_rows(tmp_path / "list.json")
    assert list(rows) == [{"a": 1}, 5] and total == 2
    assert list(open_rows(tmp_path / "wrapped.json")[0]) == [{"a": 1}]
    with pytest.raises(ValueError, match="list of rows"):
        open_rows(tmp_path / "scalar.json")
    with pytest.raises(ValueError, match="not valid JSON"):
        open_rows(tmp_path / "broken.json")


def test_parquet_through_datasets(tmp_path):
    datasets.Dataset.from_list(numina_rows(4)).to_parquet(str(tmp_path / "rows.parquet"))
    rows, total = open_rows(tmp_path / "rows.parquet", limit=3)
    rows = list(rows)
    assert total == 3 and [r["problem"] for r in rows] == [r["problem"] for r in numina_rows(3)]


def test_folder_prefers_files_of_the_split(tmp_path):
    (tmp_path / "data").mkdir()
    datasets.Dataset.from_list(numina_rows(2)).to_parquet(str(tmp_path / "data" / "train-00000-of-00001.parquet"))
    write_jsonl(tmp_path / "data" / "test.jsonl", [{"x": 1}])
    rows, total = open_rows(tmp_path)
    assert total == 2 and len(list(rows)) == 2
    rows, _ = open_rows(tmp_path, split="test")
    assert list(rows) == [{"x": 1}]
    rows, total = open_rows(tmp_path, split="validation")  # no file of that split: all files
    assert total is None and len(list(rows)) == 3


def test_folder_saved_by_datasets(tmp_path):
    datasets.DatasetDict({"train": datasets.Dataset.from_list(numina_rows(3))}).save_to_disk(str(tmp_path / "saved"))
    rows, total = open_rows(tmp_path / "saved")
    assert total == 3 and list(rows)[0]["problem"] == numina_rows(1)[0]["problem"]
    with pytest.raises(ValueError, match="has no split 'test'"):
        open_rows(tmp_path / "saved", split="test")


def test_hub_id_goes_to_load_dataset(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return [{"problem": "p", "solution": "s"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows, total = open_rows("AI-MO/NuminaMath-CoT", split="test", config="default")
    assert calls == [("AI-MO/NuminaMath-CoT", "default", "test")] and total == 1 and len(list(rows)) == 1


@pytest.mark.parametrize(
    "source, message",
    [
        ("no/such/path", "neither a file, a folder nor a hub id"),
        ("nothing-here", "neither a file, a folder nor a hub id"),
        ("data/rows.jsonl", "file not found"),
        ("", "empty string"),
    ],
)
def test_missing_source(source, message):
    with pytest.raises(ValueError, match=message):
        open_rows(source)


def test_bad_files_and_limits(tmp_path):
    (tmp_path / "rows.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="expected one of"):
        open_rows(tmp_path / "rows.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        open_rows(tmp_path / "empty")
    with pytest.raises(ValueError, match="limit"):
        open_rows(tmp_path / "rows.csv", limit=-1)
