"""The probe against a hand computation, and the continuum experiment at a reduced size."""

import json
import subprocess
from pathlib import Path

import torch

from nemo_beyond_nll.data.char_tokenizer import CharTokenizer
from nemo_beyond_nll.data.synthetic import make_split
from nemo_beyond_nll.engines.cpu.runtime import causal_mask, init_megatron_cpu
from nemo_beyond_nll.engines.cpu.models import TinyGPTConfig, build_tiny_gpt
from nemo_beyond_nll.engines.cpu.trainer import encode

ROOT = Path(__file__).parents[3]
SMALL = ["data.num_train=64", "data.num_validation=8", "trainer.global_batch_size=16",
         "trainer.micro_batch_size=16", "model.tiny.hidden_size=32", "model.tiny.ffn_hidden_size=64"]


def cli(*args):
    proc = subprocess.run(["nemo-beyond-nll", *args], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stderr


def test_probe_statistics_match_a_hand_computation(tmp_path):
    run_dir = tmp_path / "probe"
    log = cli("probe", "--config", str(ROOT / "recipes/tiny_cpu.yaml"), *SMALL, f"checkpoint.dir={run_dir}")
    report = json.loads((run_dir / "probe.json").read_text())
    assert (run_dir / "probe.png").exists()

    # The same base model at TP=1 (CPU initialisation gives every TP size the same weights) and the
    # same completion tokens: p by plain log_softmax.
    init_megatron_cpu(tensor_parallel=1)
    tok = CharTokenizer()
    model = build_tiny_gpt(TinyGPTConfig(vocab_size=tok.vocab_size, seq_length=32, hidden_size=32,
                                         num_attention_heads=4, ffn_hidden_size=64), seed=1234)
    model.eval()
    train, _ = make_split("sort", 64, 8, 0)
    data = encode(train, tok, 32)
    with torch.no_grad():
        logits = model(data["tokens"], torch.arange(32)[None].expand(64, -1), causal_mask(32))
    p = torch.softmax(logits.double(), -1).gather(-1, data["labels"][..., None]).squeeze(-1)
    p = p[data["loss_mask"].bool()]
    stats = report["stats"]
    assert stats["num_tokens"] == p.numel()
    assert abs(stats["mean_p"] - float(p.mean())) < 1e-5
    assert abs(stats["fraction_above"]["p>0.1"] - float((p > 0.1).double().mean())) < 1e-9
    assert abs(stats["quantiles"]["q50"] - float(torch.quantile(p, 0.5))) < 1e-5
    # A random model gives every token about 1/V: the weak end.
    assert report["recommendation"]["placement"] == "weak" and report["recommendation"]["loss"] == "nll"
    assert "recommended: model.loss=nll" in log


def test_continuum_experiment_reduced(tmp_path):
    out = tmp_path / "continuum"
    args = ["continuum", "--config", str(ROOT / "recipes/continuum_cpu.yaml"), *SMALL, f"checkpoint.dir={out}",
            "continuum.pretrain_steps=4", "continuum.strong.steps=2", "continuum.weak.steps=2",
            "continuum.objectives=[nll,neg_p]", "continuum.seeds=[0,1]"]
    log = cli(*args)
    table = (out / "continuum.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| strong") or line.startswith("| weak")]
    assert len(rows) == 4 and "nll()" in table and "neg_p()" in table
    assert "probe places it at the" in table and "strong end" in table and "weak end" in table
    assert (out / "continuum.png").read_bytes()[:4] == b"\x89PNG"
    csv_lines = (out / "continuum.csv").read_text().splitlines()
    assert csv_lines[0].startswith("end,task,noise,objective,mean,std,seeds") and len(csv_lines) == 5
    probes = json.loads((out / "probes.json").read_text())
    assert set(probes) == {"strong", "weak"}
    for end in ("strong", "weak"):
        for name in ("nll", "neg-p"):
            for seed in (0, 1):
                assert (out / end / name / f"seed{seed}" / "summary.json").exists()
    assert "| end | task (label noise)" in log
    # A rerun skips every finished run and prints the same table.
    assert cli(*args).count("sft ") == 0
    assert (out / "continuum.md").read_text() == table


def test_crossover_sweep_reduced(tmp_path):
    out = tmp_path / "crossover"
    args = ["continuum", "--config", str(ROOT / "recipes/crossover_cpu.yaml"), *SMALL, f"checkpoint.dir={out}",
            "continuum.sweep.pretrain_steps=[0,3]", "continuum.sweep.steps=2", "continuum.objectives=[nll,neg_p,auto]",
            "continuum.seeds=[0,1]", "model.auto_batches=1"]
    log = cli(*args)
    rows = json.loads((out / "crossover.json").read_text())
    assert [(r["pretrain_steps"], r["name"]) for r in rows] == [(k, n) for k in (0, 3) for n in ("nll", "neg_p", "auto")]
    for r in rows:
        assert len(r["seeds"]) == 2 and 0 <= r["mean_p"] <= 1
        probe = json.loads((out / f"pretrain{r['pretrain_steps']}" / "probe.json").read_text())["stats"]
        assert r["mean_p"] == probe["mean_p"] and r["fraction_above"] == probe["fraction_above"]["p>0.55"]
    for r in (r for r in rows if r["name"] == "auto"):  # auto trained what it chose, seed by seed
        assert len(r["auto_chose"]) == 2
        chosen = next(x for x in rows if x["pretrain_steps"] == r["pretrain_steps"] and x["name"] == r["auto_chose"][0])
        assert r["seeds"] == chosen["seeds"]
    assert (out / "base3" / "summary.json").exists() and not (out / "base0").exists()  # 0 steps: no pre-training
    table = (out / "crossover.md").read_text()
    assert "| pre-training steps | base mean p | p > 0.55 | probe |" in table and "neg_p - nll (points)" in table
    assert (out / "crossover.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "crossover.csv").read_text().splitlines()) == 1 + 6
    assert "model.loss=auto: mean p" in log
    assert cli(*args).count("sft ") == 0  # a rerun skips every finished run
    assert (out / "crossover.md").read_text() == table
