"""Where raw rows come from: a local file or folder, or a dataset on the Hugging Face hub.

JSON Lines and JSON files are read here line by line rather than through `datasets`, because one
broken line or one row of another type makes `datasets` reject the whole file, while a builder
must count such a row as malformed and go on. Parquet files, folders saved with
`Dataset.save_to_disk` and hub ids go through `datasets`.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Tuple, Union

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SAVED_DATASET_FILES = ("dataset_info.json", "dataset_dict.json", "state.json")


def open_rows(
    source: Union[str, Path],
    *,
    split: str = "train",
    config: Optional[str] = None,
    limit: Optional[int] = None,
) -> Tuple[Iterable[Any], Optional[int]]:
    """The rows of `source` and their number when known.

    `source` is a .jsonl, .json or .parquet file; a folder of such files (only those whose name
    starts with `split` when there are any, as in the hub's `data/train-00000-of-00001.parquet`);
    a folder written by `save_to_disk`; or a hub id such as "AI-MO/NuminaMath-CoT", loaded with
    `datasets.load_dataset(source, config, split=split)`. A JSON Lines line that is not valid
    JSON is yielded as None, for the builder to count as malformed. `limit` keeps the first rows.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    if not str(source).strip():
        raise ValueError("source must be a path or a hub id, got an empty string")
    path = Path(source)
    if not path.exists() and path.suffix.lower() in LOCAL_SUFFIXES:  # "data/x.jsonl" is no hub id
        raise ValueError(f"file not found: {path}")
    if path.is_file():
        rows, total = _file_rows(path)
    elif path.is_dir():
        rows, total = _folder_rows(path, split)
    elif isinstance(source, str) and _HUB_ID.fullmatch(source):
        rows = _hub_rows(source, config, split)
        total = len(rows)
    else:
        raise ValueError(f"source {str(source)!r} is neither a file, a folder nor a hub id like 'owner/name'")
    if limit is not None:
        rows = itertools.islice(rows, limit)
        total = limit if total is None else min(total, limit)
    return rows, total


def _file_rows(path: Path) -> Tuple[Iterable[Any], Optional[int]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_rows(path), None
    if suffix == ".json":
        rows = _json_rows(path)
        return rows, len(rows)
    if suffix == ".parquet":
        import datasets

        rows = datasets.load_dataset("parquet", data_files=str(path), split="train")
        return rows, len(rows)
    raise ValueError(f"cannot read {path}: expected one of {', '.join(LOCAL_SUFFIXES)}")


def _jsonl_rows(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield None


def _json_rows(path: Path) -> List[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ValueError(f"{path} must hold a list of rows (or {{'data': [...]}})")
    return data


def _folder_rows(path: Path, split: str) -> Tuple[Iterable[Any], Optional[int]]:
    if any((path / name).is_file() for name in _SAVED_DATASET_FILES):
        return _saved_rows(path, split)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_SUFFIXES)
    if not files:
        raise ValueError(f"folder {path} holds no {', '.join(LOCAL_SUFFIXES)} files")
    of_split = [p for p in files if p.name.startswith(split)]
    files = of_split or files
    parts = [_file_rows(p) for p in files]
    totals = [total for _, total in parts]
    total = None if None in totals else sum(totals)
    return itertools.chain.from_iterable(rows for rows, _ in parts), total


def _saved_rows(path: Path, split: str):
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"{path} has no split {split!r}; it has {', '.join(loaded)}")
        loaded = loaded[split]
    return loaded, len(loaded)


def _hub_rows(hub_id: str, config: Optional[str], split: str):
    import datasets

    return datasets.load_dataset(hub_id, config, split=split)
