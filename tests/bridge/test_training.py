"""Our objectives in Megatron-Bridge's own training loop: import, fine-tune, resume, export, probe.

Each job runs the real Megatron-Bridge 0.6 / Megatron-Core 0.19 code under torchrun with gloo on
the CPU (support/cpu_redirects.py lists what is redirected), on tiny random-weight Qwen2- and
Llama-shaped backbones imported with `nemo-beyond-nll import` (Bridge's own importer).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from .tiny import run_job, scalars, write_hf_backbone, write_recipe, write_sort_data

pytestmark = pytest.mark.bridge

ARCHS = ("qwen2", "llama")
STEPS = [1, 2, 3, 4]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Per architecture: an HF folder, its Megatron checkpoint (through `nemo-beyond-nll import`), data."""
    root = tmp_path_factory.mktemp("bridge")
    data = write_sort_data(root / "data")
    spaces = {}
    for arch in ARCHS:
        hf = write_hf_backbone(root / f"hf_{arch}", arch)
        recipe = write_recipe(root / f"import_{arch}.yaml", arch=arch, hf_path=hf, data=data,
                              run_dir=root / f"unused_{arch}", pretrained=root / f"megatron_{arch}")
        run_job("import", recipe)
        assert (root / f"megatron_{arch}" / "latest_checkpointed_iteration.txt").is_file()
        spaces[arch] = {"root": root, "hf": hf, "data": data, "pretrained": root / f"megatron_{arch}", "arch": arch}
    return spaces


def recipe_for(space, name, **kwargs):
    root = space["root"]
    return write_recipe(root / f"{name}.yaml", arch=space["arch"], hf_path=space["hf"], data=space["data"],
                        run_dir=root / name, pretrained=space["pretrained"], **kwargs)


@pytest.fixture(scope="module")
def nll_runs(workspace):
    """Per architecture, four steps of nll: through our step (`sft`) and through Bridge's own step."""
    runs = {}
    for arch, space in workspace.items():
        ours, theirs = recipe_for(space, f"ours_{arch}"), recipe_for(space, f"theirs_{arch}")
        runs[arch] = {"ours": ours.parent / f"ours_{arch}", "theirs": theirs.parent / f"theirs_{arch}",
                      "ours_recipe": ours, "ours_output": run_job("sft", ours)}
        run_job("bridge-sft", theirs)
    return runs


@pytest.mark.parametrize("arch", ARCHS)
def test_nll_through_our_step_equals_bridges_own_finetune(nll_runs, arch):
    run = nll_runs[arch]
    for tag, rel in (("lm loss", 2e-6), ("grad-norm", 1e-5)):
        ours, theirs = scalars(run["ours"], tag), scalars(run["theirs"], tag)
        assert sorted(ours) == sorted(theirs) == STEPS, tag
        for step in STEPS:
            assert ours[step] == pytest.approx(theirs[step], rel=rel), (tag, step)
    loss = scalars(run["ours"], "lm loss")
    assert loss[4] < loss[1], "four steps at lr 1e-3 should lower the loss"
    # trainer.eval_interval 0: no validation at all, neither during training nor after it.
    assert scalars(run["ours"], "lm loss validation") == {}
    assert "validation loss" not in run["ours_output"]


def test_a_resumed_run_continues_exactly_where_it_stopped(workspace, nll_runs):
    space = workspace["qwen2"]
    stopped = recipe_for(space, "resumed_qwen2", extra_overrides=["train.exit_interval=2"])
    run_job("sft", stopped)
    assert sorted(scalars(space["root"] / "resumed_qwen2", "lm loss")) == [1, 2]
    resumed = recipe_for(space, "resumed_qwen2")
    output = run_job("sft", resumed)
    assert "from /" in output and "at iteration 2" in output  # Bridge loaded our checkpoint of step 2
    uninterrupted = scalars(nll_runs["qwen2"]["ours"], "lm loss")
    again = scalars(space["root"] / "resumed_qwen2", "lm loss")
    assert sorted(again) == STEPS, again
    for step in (3, 4):
        assert again[step] == pytest.approx(uninterrupted[step], rel=1e-6), step


def test_neg_p_logs_its_metrics_and_tensor_parallel_2_equals_1(workspace):
    space = workspace["qwen2"]
    runs = {}
    for tp in (1, 2):
        recipe = recipe_for(space, f"neg_p_tp{tp}", loss="neg_p", tensor_parallel=tp,
                            extra_overrides=["validation.eval_interval=2", "validation.eval_iters=1"])
        runs[tp] = (space["root"] / f"neg_p_tp{tp}", run_job("sft", recipe, nproc=tp))
    run_dir, output = runs[2]
    loss, prob, kept = (scalars(run_dir, t) for t in ("neg_p loss", "target prob", "kept fraction"))
    assert sorted(loss) == STEPS and scalars(run_dir, "lm loss") == {}
    for step in STEPS:
        # Every token is kept, so the mean of 1 - p is 1 - mean p.
        assert loss[step] == pytest.approx(1 - prob[step], abs=1e-6)
        assert kept[step] == 1.0
        assert loss[step] == pytest.approx(scalars(runs[1][0], "neg_p loss")[step], rel=1e-5)
    # Validation logs the loss alone: Bridge prints a perplexity beside every validation value.
    assert sorted(scalars(run_dir, "neg_p loss validation")) == [2, 4]
    assert scalars(run_dir, "target prob validation") == {} and "target prob PPL" not in output


THRESHOLD = 0.008  # a random model gives p around 1/128: this keeps part of the tokens, unevenly


@pytest.fixture(scope="module")
def reduction_runs(workspace):
    """nll_threshold on the tiny Llama, global batch 8 of micro-batches of 2, under both reductions at
    data-parallel 1 (four micro-batches accumulated) and 2 (two per rank); each rank records its
    micro-batches' loss sums, kept counts and rows (bridge_worker's sft-record)."""
    space, runs = workspace["llama"], {}
    for reduction in ("global", "micro_batch"):
        for dp in (1, 2):
            name = f"nll_threshold_{reduction}_dp{dp}"
            recipe = recipe_for(space, name, loss="nll_threshold")
            run_job("sft-record", recipe, f"model.loss_reduction={reduction}", f"launch.nproc_per_node={dp}",
                    f"model.loss_args.threshold={THRESHOLD}", nproc=dp)
            run_dir = space["root"] / name
            ranks = [json.loads((run_dir / f"micro_batches.rank{r}.json").read_text()) for r in range(dp)]
            runs[reduction, dp] = {"dir": run_dir, "ranks": ranks, "loss": scalars(run_dir, "nll_threshold loss"),
                                   "grad-norm": scalars(run_dir, "grad-norm")}
    return runs


def micro_batches(run, step):
    return [m for rank in run["ranks"] for m in rank if m["step"] == step]


def mean_of_micro_batch_means(run, step):
    """The micro_batch objective: each micro-batch's sum over max(its kept count, 1), averaged."""
    mbs = micro_batches(run, step)
    return sum(m["sum"] / max(m["kept"], 1.0) for m in mbs) / len(mbs)


def pooled_mean(run, step):
    mbs = micro_batches(run, step)
    return sum(m["sum"] for m in mbs) / sum(m["kept"] for m in mbs)


def test_threshold_objective_logs_kept_fraction(reduction_runs):
    run_dir = reduction_runs["global", 1]["dir"]
    kept = scalars(run_dir, "kept fraction")
    assert sorted(kept) == STEPS and all(0.0 < k < 1.0 for k in kept.values()), kept
    # -log p of tokens with p above the threshold: between 0 and -log(threshold).
    loss = scalars(run_dir, "nll_threshold loss")
    assert all(0.0 < v < -math.log(THRESHOLD) for v in loss.values()), loss


@pytest.mark.parametrize("dp", [1, 2])
def test_the_logged_loss_is_the_one_each_reduction_trains(reduction_runs, dp):
    """micro_batch: the mean of the micro-batch means (not Bridge's pooled sum / count); global: pooled."""
    for reduction, expected in (("micro_batch", mean_of_micro_batch_means), ("global", pooled_mean)):
        run = reduction_runs[reduction, dp]
        assert sorted(run["loss"]) == STEPS
        for step in STEPS:
            assert len(micro_batches(run, step)) == 4
            assert run["loss"][step] == pytest.approx(expected(run, step), rel=1e-6), (reduction, step)
    # The two reductions are told apart here: the kept counts of the micro-batches differ.
    run = reduction_runs["micro_batch", dp]
    assert mean_of_micro_batch_means(run, 1) != pytest.approx(pooled_mean(run, 1), rel=1e-5)


def test_data_parallel_2_equals_1_under_global(reduction_runs):
    one, two = reduction_runs["global", 1], reduction_runs["global", 2]
    for tag in ("loss", "grad-norm"):
        assert sorted(two[tag]) == sorted(one[tag]) == STEPS
        for step in STEPS:
            assert two[tag][step] == pytest.approx(one[tag][step], rel=1e-6), (tag, step)


def test_data_parallel_2_trains_another_grouping_under_micro_batch(reduction_runs):
    """Bridge's batch sampler deals a global batch to data-parallel ranks interleaved (rank r: rows r,
    r + DP, ...), so at DP=2 the micro-batches pair rows (0, 2), (4, 6) and (1, 3), (5, 7) instead of
    (0, 1), (2, 3), ...: the micro_batch objective changes with the data-parallel size."""
    one, two = reduction_runs["micro_batch", 1], reduction_runs["micro_batch", 2]
    # Step 1, same weights: DP=2's micro-batches hold DP=1's rows, interleaved.
    rows = [p for m in micro_batches(one, 1) for p in m["row_p"]]
    assert [m["row_p"] for m in micro_batches(two, 1)] == [
        pytest.approx(rows[r::2][i:i + 2], rel=1e-5) for r in (0, 1) for i in (0, 2)]
    # The same tokens kept, the same pooled mean; only the grouping, hence the objective, differs.
    assert sum(m["kept"] for m in micro_batches(two, 1)) == sum(m["kept"] for m in micro_batches(one, 1))
    assert pooled_mean(two, 1) == pytest.approx(pooled_mean(one, 1), rel=1e-6)
    # The size of the difference (docs/reproducing.md, the micro-batch reduction), with margin: measured relative
    # differences 4.8e-4 (loss) and 3.6e-3 (grad norm) at step 1, at most 3.4e-3 and 3.1e-2 over the
    # four steps, as the two runs' weights drift apart.
    for tag, first, after in (("loss", 2e-3, 1.5e-2), ("grad-norm", 1.5e-2, 0.12)):
        assert sorted(two[tag]) == sorted(one[tag]) == STEPS
        rel = {step: abs(two[tag][step] / one[tag][step] - 1) for step in STEPS}
        assert 1e-5 < rel[1] < first, (tag, rel)
        assert max(rel.values()) < after, (tag, rel)


def test_a_step_that_keeps_no_token_logs_zero_and_warns(workspace):
    space = workspace["llama"]
    recipe = recipe_for(space, "keeps_nothing_llama", loss="neg_p_threshold")
    output = run_job("sft", recipe, "model.loss_args.threshold=0.9")
    run_dir = space["root"] / "keeps_nothing_llama"
    loss, kept, norm = (scalars(run_dir, t) for t in ("neg_p_threshold loss", "kept fraction", "grad-norm"))
    assert sorted(loss) == STEPS
    assert all(v == 0.0 for v in loss.values()) and all(v == 0.0 for v in kept.values())
    assert not any(math.isnan(v) for v in list(loss.values()) + list(norm.values()))
    assert all(v == 0.0 for v in norm.values())
    assert "keeps no token of a micro-batch" in output and "threshold=0.9" in output


@pytest.mark.parametrize("arch", ARCHS)
def test_export_to_hugging_face_gives_the_megatron_models_logits(nll_runs, arch):
    from transformers import AutoModelForCausalLM

    output = run_job("export", nll_runs[arch]["ours_recipe"], nproc=None)
    exported = nll_runs[arch]["ours"] / "hf" / "iter_0000004"
    assert f"exported to {exported}" in output
    saved = torch.load(exported / "megatron_logits.pt")
    model = AutoModelForCausalLM.from_pretrained(exported, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(saved["tokens"]).logits
    megatron = saved["logits"]
    assert logits.shape == megatron.shape == (2, 12, 128)
    torch.testing.assert_close(logits, megatron, rtol=1e-4, atol=1e-4)
    # The export holds the fine-tuned weights, not the imported ones.
    base = AutoModelForCausalLM.from_pretrained(nll_runs[arch]["ours"].parent / f"hf_{arch}", torch_dtype=torch.float32)
    with torch.no_grad():
        assert not torch.allclose(base(saved["tokens"]).logits, megatron, atol=1e-3)


def test_probe_on_the_bridge_path(workspace, nll_runs):
    output = run_job("probe", nll_runs["qwen2"]["ours_recipe"])
    report = json.loads((nll_runs["qwen2"]["ours"] / "probe.json").read_text())
    stats = report["stats"]
    # The fine-tuned model's own probabilities on its training rows: 16 rows x (5 letters + EOS).
    assert stats["num_tokens"] == 64 * 6 and 0.0 < stats["mean_p"] < 0.5, stats
    assert report["recommendation"]["placement"] == "weak" and "weak" in output


def test_auto_chooses_once_trains_its_choice_and_a_resumed_run_keeps_it(workspace, nll_runs):
    space = workspace["qwen2"]
    stopped = recipe_for(space, "auto_qwen2", loss="auto", extra_overrides=["train.exit_interval=2"])
    output = run_job("sft", stopped)
    run_dir = space["root"] / "auto_qwen2"
    choice = json.loads((run_dir / "auto.json").read_text())
    # a random-weight backbone gives its targets p ~ 1/vocabulary: the weak end, nll
    assert choice["loss"] == "nll" and choice["placement"] == "weak" and choice["mean_p"] < 0.1
    assert output.count("model.loss=auto: mean p") == 1 and "weak end -> model.loss=nll" in output
    resumed = recipe_for(space, "auto_qwen2", loss="auto")
    output = run_job("sft", resumed)
    assert "model.loss=auto: mean p" not in output and "at iteration 2" in output  # never probes again
    assert json.loads((run_dir / "auto.json").read_text()) == choice
    # It trained exactly its choice: the losses of the uninterrupted nll run.
    auto, nll = scalars(run_dir, "lm loss"), scalars(nll_runs["qwen2"]["ours"], "lm loss")
    assert sorted(auto) == STEPS
    for step in STEPS:
        assert auto[step] == pytest.approx(nll[step], rel=1e-6), step
