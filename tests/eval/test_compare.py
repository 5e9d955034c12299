import csv
import json

import pytest
from matplotlib.image import imread

from nemo_beyond_nll.eval.compare import compare_runs, load_summary


def run_dir(root, name, objective, accuracy):
    path = root / name
    path.mkdir()
    (path / "summary.json").write_text(json.dumps({"objective": objective, "accuracy": accuracy}))
    return path


def test_two_runs(tmp_path):
    runs = [
        run_dir(tmp_path, "nll", "nll", {"math500": 0.4, "aime24": 0.1}),
        run_dir(tmp_path, "top_p", "neg_p_threshold(threshold=0.1, keep=above)", {"math500": 0.5, "aime24": 0.05}),
    ]
    table = compare_runs(runs, tmp_path / "out")
    assert table == (
        "| objective | math500 | aime24 | average |\n"
        "|---|---:|---:|---:|\n"
        "| nll | 40.0 | **10.0** | 25.0 |\n"
        "| neg_p_threshold(threshold=0.1, keep=above) | **50.0** | 5.0 | **27.5** |\n"
    )
    assert (tmp_path / "out" / "comparison.md").read_text() == table
    with open(tmp_path / "out" / "comparison.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["objective", "math500", "aime24", "average"]
    assert rows[1][0] == "nll" and [float(v) for v in rows[1][1:]] == pytest.approx([0.4, 0.1, 0.25])
    assert [float(v) for v in rows[2][1:]] == pytest.approx([0.5, 0.05, 0.275])
    image = imread(tmp_path / "out" / "comparison.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0  # not a blank canvas


def test_missing_benchmark_and_repeated_objective(tmp_path):
    runs = [
        run_dir(tmp_path, "seed0", "nll", {"medqa": 0.5, "pubmedqa": 0.7}),
        run_dir(tmp_path, "seed1", "nll", {"medqa": 0.6}),
    ]
    table = compare_runs(runs, tmp_path / "out")
    assert "| nll (seed0) | 50.0 | **70.0** | **60.0** |" in table
    assert "| nll (seed1) | **60.0** | - | - |" in table
    with open(tmp_path / "out" / "comparison.csv", newline="") as f:
        assert list(csv.reader(f))[2][2:] == ["", ""]


def test_single_run_has_no_bold(tmp_path):
    table = compare_runs([run_dir(tmp_path, "r", "dft", {"figfont": 0.25})], tmp_path / "out")
    assert table.splitlines()[-1] == "| dft | 25.0 | 25.0 |"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no summary.json"),
        ("{", "not valid JSON"),
        ("[]", "must hold an object"),
        ({"accuracy": {"a": 0.1}}, "'objective' must be a non-empty string"),
        ({"objective": 3, "accuracy": {"a": 0.1}}, "'objective' must be a non-empty string"),
        ({"objective": "nll", "accuracy": {}}, "'accuracy' must map"),
        ({"objective": "nll", "accuracy": {"a": 41.2}}, "fraction in \\[0, 1\\]"),
        ({"objective": "nll", "accuracy": {"a": "0.4"}}, "fraction in \\[0, 1\\]"),
        ({"objective": "nll", "accuracy": {"average": 0.4}}, "cannot be a benchmark name"),
    ],
)
def test_bad_summaries(tmp_path, content, message):
    path = tmp_path / "run"
    path.mkdir()
    if content is not None:
        (path / "summary.json").write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=message):
        load_summary(path)
    with pytest.raises(ValueError, match=message):
        compare_runs([path], tmp_path / "out")


@pytest.mark.parametrize("run_dirs", [[], "runs/a"])
def test_bad_run_dirs(tmp_path, run_dirs):
    with pytest.raises(ValueError, match="non-empty list of run directories"):
        compare_runs(run_dirs, tmp_path / "out")
