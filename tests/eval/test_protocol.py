"""The paper's evaluation protocol: k generations per problem (first-sample accuracy, mean@k,
pass@k), per-benchmark sampling settings, figfont's graded metrics, the m1 set's accuracy per source."""

import itertools
import json
import math
import sys

import pytest

from nemo_beyond_nll.config import ConfigError
from nemo_beyond_nll.domains.figfont.similarity import figfont_metrics, jaro, jaro_winkler
from nemo_beyond_nll.eval.backends import load_vllm
from nemo_beyond_nll.eval.benchmark_sets import grouped_rows, load_benchmark
from nemo_beyond_nll.eval.compare import compare_runs
from nemo_beyond_nll.eval.metrics import benchmark_metrics, pass_at_k
from nemo_beyond_nll.eval.runner import evaluate_benchmarks
from nemo_beyond_nll.eval.sampling import Sampling, recipe_sampling
from nemo_beyond_nll.recipe import load_recipe
from tests.data.fixtures import read_jsonl, write_jsonl

from .benchmark_rows import FIXTURES, M1_GOOD
from .test_backends import MATH_RECIPE, RECIPES, fake_vllm


# ---------------------------------------------------------------------------------------------
# pass@k


def brute_force_pass_at_k(n, c, k):
    """Over every k-subset of n generations (c of them right): the fraction holding a right one."""
    verdicts = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(verdicts[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_is_the_brute_force_count(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k)), (n, c, k)
    assert pass_at_k(16, 4, 1) == pytest.approx(4 / 16)  # pass@1 is the fraction right
    assert pass_at_k(16, 1, 16) == 1.0 and pass_at_k(16, 0, 16) == 0.0
    assert pass_at_k(100, 3, 10) == pytest.approx(1 - math.comb(97, 10) / math.comb(100, 10))


@pytest.mark.parametrize("args", [(4, 5, 1), (4, 1, 0), (4, 1, 5), (-1, 0, 1), (4.0, 1, 1)])
def test_pass_at_k_rejects_impossible_counts(args):
    with pytest.raises(ValueError):
        pass_at_k(*args)


def test_benchmark_metrics():
    records = [{"correct": True, "corrects": [True, False, True, True]},
               {"correct": False, "corrects": [False, False, False, False]},
               {"correct": False, "corrects": [False, True, False, False]}]
    metrics = benchmark_metrics(records, 4)
    assert metrics["first_sample"] == pytest.approx(1 / 3)
    assert metrics["mean_at_k"] == pytest.approx((3 / 4 + 0 + 1 / 4) / 3)
    assert metrics["pass_at_k"] == {"1": pytest.approx(metrics["mean_at_k"]), "4": pytest.approx(2 / 3)}
    assert benchmark_metrics([{"correct": True}, {"correct": False}], 1) == {
        "first_sample": 0.5, "mean_at_k": 0.5, "pass_at_k": {"1": 0.5}}
    with pytest.raises(ValueError, match="4 graded generations"):
        benchmark_metrics([{"correct": True}], 4)


# ---------------------------------------------------------------------------------------------
# Figfont metrics


@pytest.mark.parametrize(
    "a, b, jaro_value, jaro_winkler_value",
    [("MARTHA", "MARHTA", 0.944, 0.961), ("DWAYNE", "DUANE", 0.822, 0.840), ("DIXON", "DICKSONX", 0.767, 0.813),
     ("JELLYFISH", "SMELLYFISH", 0.896, 0.896)],
)
def test_jaro_winkler_published_values(a, b, jaro_value, jaro_winkler_value):
    assert jaro(a, b) == pytest.approx(jaro_value, abs=5e-4)
    assert jaro_winkler(a, b) == pytest.approx(jaro_winkler_value, abs=5e-4)
    assert jaro_winkler(b, a) == pytest.approx(jaro_winkler(a, b))


def test_jaro_winkler_edges():
    assert jaro_winkler("ABC", "ABC") == 1.0 and jaro_winkler("", "") == 1.0
    assert jaro_winkler("ABC", "") == 0.0 and jaro_winkler("ABC", "XYZ") == 0.0
    assert jaro_winkler("abc", "ABC") == 0.0  # case counts unless the caller folds it
    with pytest.raises(ValueError):
        jaro_winkler("ABC", None)


def test_figfont_metrics():
    assert figfont_metrics(" HELLO\n", "HELLO") == {"exact_match": 1.0, "case_insensitive": 1.0, "jaro_winkler": 1.0}
    assert figfont_metrics("hello", "HELLO") == {"exact_match": 0.0, "case_insensitive": 1.0, "jaro_winkler": 1.0}
    scores = figfont_metrics("MARHTA", "MARTHA")
    assert scores["exact_match"] == scores["case_insensitive"] == 0.0
    assert scores["jaro_winkler"] == pytest.approx(0.961, abs=5e-4)
    assert figfont_metrics(None, "OK") == {"exact_match": 0.0, "case_insensitive": 0.0, "jaro_winkler": 0.0}


# ---------------------------------------------------------------------------------------------
# The runner with k generations per problem

# medmcqa's fixture rows: m1 (gold A), m2 (gold C); four generations each
K_OUTPUTS = {
    "m1": ["The answer is A.", "The answer is B.", "The answer is A.", "The answer is A."],  # 3 of 4, first right
    "m2": ["The answer is A.", "The answer is B.", "The answer is D.", "The answer is A."],  # none right
}


class SamplingModel:
    """Stands in for vLLM with n=k: the k known outputs of each prompt; records every batch."""

    def __init__(self, bench, k=4, fail_after_batches=None):
        self.by_prompt = {row["prompt"]: K_OUTPUTS[row["id"]][:k] for row in bench.rows}
        self.batches, self.fail_after_batches = [], fail_after_batches

    def __call__(self, prompts):
        if self.fail_after_batches is not None and len(self.batches) >= self.fail_after_batches:
            raise RuntimeError("the GPU went away")
        self.batches.append(list(prompts))
        return [list(self.by_prompt[p]) for p in prompts]


@pytest.fixture
def medmcqa(tmp_path):
    return load_benchmark("medmcqa", source=write_jsonl(tmp_path / "medmcqa.jsonl", FIXTURES["medmcqa"][0]))


def test_k_generations_first_sample_mean_and_pass_at_k(tmp_path, medmcqa):
    sampling = {"medmcqa": Sampling(num_generations=4, temperature=1.0, top_p=1.0, max_new_tokens=64)}
    summary = evaluate_benchmarks([medmcqa], SamplingModel(medmcqa), tmp_path, sampling=sampling, progress=False,
                                  objective="nll")
    assert summary["accuracy"] == summary["first_sample_accuracy"] == {"medmcqa": 0.5}
    assert summary["num_generations"] == {"medmcqa": 4}
    assert summary["mean_at_k"] == {"medmcqa": pytest.approx(3 / 8)}
    assert summary["pass_at_k"] == {"medmcqa": {"1": pytest.approx(3 / 8), "4": 0.5}}
    assert summary["sampling"] == {"medmcqa": {"num_generations": 4, "temperature": 1.0, "top_p": 1.0,
                                               "max_new_tokens": 64}}
    records = read_jsonl(tmp_path / "eval" / "medmcqa.jsonl")
    assert records[0]["outputs"] == K_OUTPUTS["m1"] and records[0]["output"] == K_OUTPUTS["m1"][0]
    assert records[0]["corrects"] == [True, False, True, True] and records[0]["correct"] is True
    assert records[0]["answers"] == ["A", "B", "A", "A"]
    assert records[1]["corrects"] == [False] * 4
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_k_generations_resume_mid_benchmark(tmp_path, medmcqa):
    crashing = SamplingModel(medmcqa, fail_after_batches=1)
    with pytest.raises(RuntimeError, match="the GPU went away"):
        evaluate_benchmarks([medmcqa], crashing, tmp_path, num_generations=4, batch_size=1, progress=False)
    partial = read_jsonl(tmp_path / "eval" / "medmcqa.jsonl.partial")
    assert [r["id"] for r in partial] == ["m1"] and len(partial[0]["outputs"]) == 4

    resumed = SamplingModel(medmcqa)
    summary = evaluate_benchmarks([medmcqa], resumed, tmp_path, num_generations=4, batch_size=1, progress=False)
    assert resumed.batches == [[medmcqa.rows[1]["prompt"]]]  # only the problem left
    assert summary["mean_at_k"] == {"medmcqa": pytest.approx(3 / 8)} and summary["pass_at_k"]["medmcqa"]["4"] == 0.5
    assert [len(r["corrects"]) for r in read_jsonl(tmp_path / "eval" / "medmcqa.jsonl")] == [4, 4]

    # Another k: the records hold the wrong number of generations and are made again.
    again = SamplingModel(medmcqa, k=2)
    summary = evaluate_benchmarks([medmcqa], again, tmp_path, num_generations=2, progress=False)
    assert len(again.batches) == 1 and summary["pass_at_k"]["medmcqa"] == {"1": 0.25, "2": 0.5}


def test_one_output_per_prompt_still_works_as_a_list_or_a_string(tmp_path, medmcqa):
    as_lists = evaluate_benchmarks([medmcqa], lambda prompts: [["The answer is A."] for _ in prompts], tmp_path / "a",
                                   progress=False)
    as_strings = evaluate_benchmarks([medmcqa], lambda prompts: ["The answer is A." for _ in prompts], tmp_path / "b",
                                     progress=False)
    for summary in (as_lists, as_strings):
        assert summary["accuracy"] == {"medmcqa": 0.5} and summary["pass_at_k"] == {"medmcqa": {"1": 0.5}}
    assert "outputs" not in read_jsonl(tmp_path / "a" / "eval" / "medmcqa.jsonl")[0]


@pytest.mark.parametrize(
    "kwargs, outputs, message",
    [
        ({"num_generations": 4}, lambda ps: [["x"] * 3 for _ in ps], "4 output\\(s\\) per prompt, got 3"),
        ({"num_generations": 2}, lambda ps: ["x" for _ in ps], "2 output\\(s\\) per prompt, got 1"),
        ({"num_generations": 0}, lambda ps: ["x" for _ in ps], "num_generations must be a positive integer"),
        ({"num_generations": {"amc23": 2}}, lambda ps: ["x" for _ in ps], "must name every benchmark"),
        ({"sampling": {"medmcqa": {"temperature": 1}}}, lambda ps: ["x" for _ in ps], "a Sampling per benchmark"),
    ],
)
def test_bad_generation_counts(tmp_path, medmcqa, kwargs, outputs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_benchmarks([medmcqa], outputs, tmp_path, progress=False, **kwargs)


def test_one_generate_per_benchmark(tmp_path, medmcqa):
    figfont = load_benchmark("figfont", source=write_jsonl(tmp_path / "figfont.jsonl", FIXTURES["figfont"][0]))
    generate = {"medmcqa": SamplingModel(medmcqa), "figfont": lambda prompts: [" ea", "ok"][:len(prompts)]}
    summary = evaluate_benchmarks([medmcqa, figfont], generate, tmp_path / "run", num_generations={"medmcqa": 4, "figfont": 1},
                                  progress=False, objective="nll")
    assert summary["num_generations"] == {"medmcqa": 4, "figfont": 1}
    # figfont's golds are EA and OK: " ea" is right up to case, "ok" too
    assert summary["accuracy"]["figfont"] == 1.0
    metrics = summary["figfont_metrics"]["figfont"]
    assert metrics == {"exact_match": 0.0, "case_insensitive": 1.0, "jaro_winkler": 1.0}
    with pytest.raises(ValueError, match="must name every benchmark"):
        evaluate_benchmarks([medmcqa, figfont], {"medmcqa": generate["medmcqa"]}, tmp_path / "other", progress=False)


# ---------------------------------------------------------------------------------------------
# m1 evaluation set


def _grouped(rows):
    groups = {}
    for row in rows:
        groups.setdefault(row["source"], []).append({k: v for k, v in row.items() if k != "source"})
    return groups


def test_m1_reads_the_hub_file_grouped_by_source_and_the_processed_list(tmp_path):
    hub_layout = tmp_path / "m1_eval_data.json"
    hub_layout.write_text(json.dumps(_grouped(M1_GOOD)))
    processed = tmp_path / "m1_eval_data_processed.json"
    processed.write_text(json.dumps(M1_GOOD))
    for path in (hub_layout, processed):
        bench = load_benchmark("m1_eval", source=path)
        assert bench.domain == "medical" and len(bench.rows) == 3
        assert [r["source"] for r in bench.rows] == ["MedMCQA_validation", "MedBullets_op5", "PubMedQA"]
        assert [r["answer"] for r in bench.rows] == ["A", "C", "B"]
        assert bench.rows[1]["prompt"].startswith("Most common site of ectopic pregnancy?\nA. Ovary\n")
        assert "E. Fimbria" in bench.rows[1]["prompt"]
    assert grouped_rows({"data": [1]}) == [1]
    assert grouped_rows({"S": [{"question": "q"}, "junk"], "T": "junk"}) == [{"question": "q", "source": "S"}, "junk", None]
    with pytest.raises(ValueError, match="expected"):
        grouped_rows("text")


def test_m1_hub_file_comes_through_huggingface_hub(tmp_path, monkeypatch):
    import huggingface_hub

    path = tmp_path / "downloaded.json"
    path.write_text(json.dumps(_grouped(M1_GOOD)))
    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda repo_id, filename, repo_type=None: calls.append((repo_id, filename, repo_type)) or str(path))
    bench = load_benchmark("m1_eval", num_samples=2)
    assert calls == [("UCSC-VLAA/m1_eval_data", "m1_eval_data.json", "dataset")]
    assert bench.source == "UCSC-VLAA/m1_eval_data/m1_eval_data.json" and len(bench.rows) == 2


def test_m1_accuracy_per_source_and_their_unweighted_average(tmp_path):
    rows = M1_GOOD + [dict(M1_GOOD[0], question="Second question of the same source?")]
    path = tmp_path / "m1.json"
    path.write_text(json.dumps(_grouped(rows)))
    bench = load_benchmark("m1_eval", source=path)
    # Right on the first MedMCQA question and on PubMedQA; wrong on the second MedMCQA one and MedBullets.
    answers = {"Drug": "The answer is A.", "Second": "The answer is B.", "Most": "The answer is A.", "Does": "The answer is B."}
    summary = evaluate_benchmarks([bench], lambda ps: [answers[p.split()[0]] for p in ps], tmp_path / "run",
                                  progress=False, objective="nll")
    assert summary["accuracy"] == {"m1_eval": 0.5}  # over all questions
    assert summary["by_source"]["m1_eval"] == {
        "MedMCQA_validation": {"accuracy": 0.5, "mean_at_k": 0.5, "num_samples": 2},
        "MedBullets_op5": {"accuracy": 0.0, "mean_at_k": 0.0, "num_samples": 1},
        "PubMedQA": {"accuracy": 1.0, "mean_at_k": 1.0, "num_samples": 1},
    }
    assert summary["source_average"] == {"m1_eval": pytest.approx(0.5)}  # (0.5 + 0 + 1) / 3
    assert [r["source"] for r in read_jsonl(tmp_path / "run" / "eval" / "m1_eval.jsonl")][:2] == [
        "MedMCQA_validation", "MedMCQA_validation"]


# ---------------------------------------------------------------------------------------------
# compare


def _run(root, name, summary):
    path = root / name
    path.mkdir()
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_compare_shows_the_new_metrics_and_still_reads_old_summaries(tmp_path):
    old = _run(tmp_path, "old", {"objective": "nll", "accuracy": {"math500": 0.4, "figfont": 0.5, "m1_eval": 0.3}})
    new = _run(tmp_path, "new", {
        "objective": "neg_p", "accuracy": {"math500": 0.5, "figfont": 0.6, "m1_eval": 0.4},
        "num_generations": {"math500": 16, "figfont": 1, "m1_eval": 1},
        "mean_at_k": {"math500": 0.45, "figfont": 0.6, "m1_eval": 0.4},
        "pass_at_k": {"math500": {"1": 0.45, "16": 0.8}, "figfont": {"1": 0.6}, "m1_eval": {"1": 0.4}},
        "figfont_metrics": {"figfont": {"exact_match": 0.5, "case_insensitive": 0.6, "jaro_winkler": 0.9}},
        "by_source": {"m1_eval": {"MedQA": {"accuracy": 0.2, "num_samples": 5}, "NEJM": {"accuracy": 0.6, "num_samples": 5}}},
        "source_average": {"m1_eval": 0.4},
    })
    table = compare_runs([old, new], tmp_path / "out")
    first, *sections = table.split("\n### ")
    assert first.splitlines()[0] == "| objective | math500 | figfont | m1_eval | average |"
    assert "| nll | 40.0 | 50.0 | 30.0 | 40.0 |" in first
    titles = [s.splitlines()[0] for s in sections]
    assert titles == ["mean@k", "pass@k", "figfont", "m1_eval by source"]
    assert "| objective | math500 (k=16) | figfont (k=1) | m1_eval (k=1) | average |" in sections[0]
    assert "| nll | - | - | - | - |" in sections[0]
    assert "| neg_p | **80.0** | **60.0** | **40.0** | **60.0** |" in sections[1]
    assert "| objective | figfont exact_match | figfont case_insensitive | figfont jaro_winkler |" in sections[2]
    assert "| neg_p | **50.0** | **60.0** | **90.0** |" in sections[2]
    assert "| objective | MedQA | NEJM | average |" in sections[3] and "| neg_p | **20.0** | **60.0** | **40.0** |" in sections[3]
    for name in ("mean_at_k", "pass_at_k", "figfont", "m1_eval_by_source"):
        assert (tmp_path / "out" / f"comparison_{name}.csv").is_file()

    # Old summaries only: the accuracy table alone, as before.
    other = _run(tmp_path, "other", {"objective": "dft", "accuracy": {"math500": 0.1}})
    table = compare_runs([old, other], tmp_path / "out2")
    assert "###" not in table and not list((tmp_path / "out2").glob("comparison_*.csv"))


# ---------------------------------------------------------------------------------------------
# Recipe keys and the vLLM backend


def test_recipe_sampling_defaults_and_per_benchmark_settings():
    cfg = load_recipe(MATH_RECIPE, ["eval.num_generations=16", "eval.temperature=1.0", "eval.max_new_tokens=4096",
                                    "eval.per_benchmark={aime24: {num_generations: 32}, math500: {top_p: 0.95}}"])
    settings = recipe_sampling(cfg.eval)
    assert settings["amc23"] == Sampling(16, 1.0, 1.0, 4096)
    assert settings["aime24"] == Sampling(32, 1.0, 1.0, 4096)
    assert settings["math500"] == Sampling(16, 1.0, 0.95, 4096)
    greedy = recipe_sampling(load_recipe(MATH_RECIPE, ["eval.num_generations=1", "eval.temperature=0"]).eval)
    assert set(greedy.values()) == {Sampling(1, 0.0, 1.0, greedy["amc23"].max_new_tokens)}
    with pytest.raises(ValueError, match="eval.per_benchmark names gsm8k"):
        recipe_sampling(load_recipe(MATH_RECIPE, ["eval.per_benchmark={gsm8k: {max_new_tokens: 2}}"]).eval)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["eval.temperature=0"], "eval.num_generations=16 needs temperature > 0"),
        (["eval.top_p=0"], r"eval.top_p must lie in \(0, 1\]"),
        (["eval.temperature=-1"], "eval.temperature must be >= 0"),
        (["eval.per_benchmark={aime24: {num_generations: 0}}"], "eval.per_benchmark.aime24.num_generations must be >= 1"),
        (["eval.per_benchmark={aime24: {bogus: 1}}"], "bogus"),
    ],
)
def test_recipe_sampling_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(MATH_RECIPE, overrides)


def test_cpu_engine_decodes_greedily():
    with pytest.raises(ConfigError, match="the cpu engine decodes greedily"):
        load_recipe(RECIPES / "tiny_cpu.yaml", ["eval.num_generations=2", "eval.temperature=1.0"])


def test_vllm_returns_k_outputs_per_prompt(monkeypatch):
    calls = fake_vllm(monkeypatch)

    class Result:
        def __init__(self, prompt, n):
            self.outputs = [type("Out", (), {"text": f"{prompt}-{i}"}) for i in range(n)]

    llm_generate = lambda self, prompts, params, use_tqdm=True: [Result(p, 3) for p in prompts]  # noqa: E731
    monkeypatch.setattr(sys.modules["vllm"].LLM, "generate", llm_generate)
    generate = load_vllm("m", seed=5).generator(max_new_tokens=8, temperature=1.0, num_generations=3)
    assert calls["params"] == [{"n": 3, "temperature": 1.0, "top_p": 1.0, "max_tokens": 8, "seed": 5}]
    assert generate(["a", "b"]) == [["a-0", "a-1", "a-2"], ["b-0", "b-1", "b-2"]]
    with pytest.raises(ValueError, match="needs temperature > 0"):
        load_vllm("m").generator(max_new_tokens=8, num_generations=3)
