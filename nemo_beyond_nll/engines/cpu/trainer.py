"""The CPU engine: fine-tune a small Megatron-Core GPT with tensor parallelism over gloo.

Runs in every torchrun worker (one per tensor-parallel rank). Same objective hook and kept-token
reduction as the GPU path; writes checkpoints, metrics.jsonl, training.png, and the held-out
evaluation (eval/samples.jsonl, summary.json) under the run directory, and resumes from the last
complete checkpoint when started again.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import torch
import torch.distributed as dist
from omegaconf import DictConfig
from tqdm import tqdm

from ...config import is_auto, objective_from_config
from ...data.char_tokenizer import CharTokenizer
from ...data.schedule import optimizer_steps
from ...data.pipeline import check_complete
from ...data.synthetic import make_split
from ...megatron import install, last_output
from .runtime import causal_mask, init_megatron_cpu
from .generate import greedy_generate
from .models import TinyGPTConfig, build_tiny_gpt
from ...megatron.completions import completion_probabilities as measure_completion_probabilities
from ...megatron.step import objective_loss_terms, supervised_labels, zero_kept_warning
from .checkpoint import latest_step, load_checkpoint, remove_unfinished_steps, save_checkpoint
from ...utils.files import atomic_write_text, read_jsonl, write_jsonl
from ...probe import decide_auto, probability_histogram, read_auto_choice
from ...run_folder import RunFolder
from .metrics import MetricsLog
from .plots import plot_training


def load_examples(cfg: DictConfig):
    """(train, validation) prompt/completion dicts: synthetic, or from the JSONL files the recipe names."""
    data = cfg.data
    if data.train is None:
        return make_split(data.task, data.num_train, data.num_validation, data.seed, noise=data.noise)
    for path in (data.train, data.validation):
        if path:
            check_complete(path)
    train = read_jsonl(Path(data.train))
    validation = read_jsonl(Path(data.validation)) if data.validation else []
    return train, validation


def encode(examples: List[dict], tokenizer: CharTokenizer, seq_length: int, truncate: bool = False) -> Dict[str, torch.Tensor]:
    rows = [tokenizer.encode_example(ex["prompt"], ex["completion"], seq_length, truncate=truncate) for ex in examples]
    return {key: torch.stack([r[key] for r in rows]) for key in rows[0]}


def lr_lambda(cfg: DictConfig, total_steps: int):
    """Linear warmup over warmup_ratio of the steps, then cosine/linear decay to min_lr (or constant)."""
    warmup = int(cfg.optim.warmup_ratio * total_steps)
    floor = cfg.optim.min_lr / cfg.optim.lr if cfg.optim.lr else 0.0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.optim.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(total_steps - warmup, 1)
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.optim.schedule == "cosine" else 1 - progress
        return floor + (1 - floor) * decay

    return factor


def grad_norm_and_clip(model, max_norm: float, tp_group) -> float:
    """Global grad norm over tensor-parallel shards (replicated parameters counted once), then clip."""
    from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

    params = [p for p in model.parameters() if p.grad is not None]
    local = torch.zeros(1, dtype=torch.float64)
    for p in params:
        if param_is_not_tensor_parallel_duplicate(p):
            local += p.grad.double().pow(2).sum()
    dist.all_reduce(local, group=tp_group)
    norm = float(local.sqrt())
    if max_norm > 0 and norm > max_norm:
        for p in params:
            p.grad.mul_(max_norm / (norm + 1e-6))
    return norm


def total_steps(cfg: DictConfig, num_train: int) -> int:
    if cfg.trainer.max_steps is not None:
        return cfg.trainer.max_steps
    return optimizer_steps(num_train, cfg.trainer.epochs, cfg.trainer.global_batch_size,
                           cfg.data.drop_last)


def batch_indices(step: int, batch_size: int, num_train: int, seed: int) -> torch.Tensor:
    """The examples of `step`: consecutive slices of per-epoch permutations, so a resume sees the same data."""
    out = []
    position = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, num_train)
        order = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed * 1000003 + epoch))
        take = min(batch_size - len(out), num_train - offset)
        out.extend(order[offset:offset + take].tolist())
        position += take
    return torch.tensor(out)


ZERO_KEPT_STEPS = 5  # consecutive steps that keep no token before a threshold objective is warned about
_stop_signals: List[int] = []


def request_stop(signum, _frame=None) -> None:
    """Signal handler of the workers: training stops cleanly after the current step."""
    _stop_signals.append(signum)


class StopTraining(Exception):
    """Training stopped on request at `step`, after saving a checkpoint there."""

    def __init__(self, step: int, rank: int, run_dir: Path):
        super().__init__(f"stopped at step {step}")
        self.step, self.rank, self.run_dir = step, rank, run_dir


def stop_requested() -> bool:
    """Whether any rank was asked to stop (collective: every rank must call it at the same step)."""
    flag = torch.tensor([1 if _stop_signals else 0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag)


@torch.no_grad()
def evaluate(model, examples: List[dict], tokenizer: CharTokenizer, cfg: DictConfig, run_dir: Path, rank: int,
             objective, extra: dict = None) -> dict:
    """Greedy answers to the held-out prompts, exact match; writes eval/samples.jsonl and summary.json."""
    seq_length = cfg.model.seq_length
    prompts = [[tokenizer.bos_id] + tokenizer.encode(ex["prompt"]) for ex in examples]
    max_new = max(len(tokenizer.encode(ex["completion"])) for ex in examples) + 1
    outputs = []
    for start in tqdm(range(0, len(prompts), 64), desc="evaluate", disable=rank != 0, file=sys.stderr):
        outputs += greedy_generate(model, prompts[start:start + 64], max_new_tokens=max_new,
                                   seq_length=seq_length, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    samples = []
    for ex, ids in zip(examples, outputs):
        answer = tokenizer.decode(ids)
        samples.append({"prompt": ex["prompt"], "output": answer, "answer": answer, "gold": ex["completion"],
                        "correct": answer == ex["completion"]})
    # Synthetic prompts start with their task's name: score each task of a mixture on its own.
    def benchmark(sample):
        return sample["prompt"].split(" ", 1)[0] if cfg.data.train is None else Path(cfg.data.validation).stem

    groups: Dict[str, List[bool]] = {}
    for sample in samples:
        groups.setdefault(benchmark(sample), []).append(sample["correct"])
    summary = {"objective": str(objective), "loss": objective.name,
               "accuracy": {name: sum(v) / len(v) for name, v in groups.items()},
               "num_samples": {name: len(v) for name, v in groups.items()}, **(extra or {})}
    if rank == 0:
        write_jsonl(RunFolder(run_dir).samples, samples)
        atomic_write_text(RunFolder(run_dir).summary, json.dumps(summary, indent=2) + "\n")
    dist.barrier()  # other ranks may read the files next
    return summary


def micro_batch_loss(loss_sum: torch.Tensor, num_kept: torch.Tensor, num_micro_batches: int) -> torch.Tensor:
    """One micro-batch's share of the `micro_batch` reduction: its summed loss over its own kept
    tokens (a micro-batch keeping none contributes 0), divided by the number of micro-batches.
    The same division Megatron's schedule makes when calculate_per_token_loss is off."""
    return loss_sum / torch.clamp(num_kept, min=1) / num_micro_batches


@dataclass
class Session:
    """What training and evaluation share: the process group, data and the model with its objective."""

    cfg: DictConfig
    rank: int
    tp_group: object
    tokenizer: CharTokenizer
    train_examples: List[dict]
    validation_examples: List[dict]
    train_data: Dict[str, torch.Tensor]
    validation_data: Dict[str, torch.Tensor]
    model: torch.nn.Module
    objective: object


def start_session(cfg: DictConfig) -> Session:
    tp = cfg.model.tensor_parallel
    init_megatron_cpu(tensor_parallel=tp)
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != tp:
        raise ValueError(f"the cpu engine runs one process per tensor-parallel rank: {world} processes for TP={tp}")
    from megatron.core import parallel_state

    torch.manual_seed(cfg.trainer.seed)
    tokenizer = CharTokenizer()
    train_examples, validation_examples = load_examples(cfg)
    seq_length = cfg.model.seq_length
    model = build_tiny_gpt(  # model.tiny holds TinyGPTConfig's architecture fields, by their names
        TinyGPTConfig(vocab_size=tokenizer.vocab_size, seq_length=seq_length, **cfg.model.tiny),
        seed=cfg.trainer.seed, tensor_parallel=tp,
    )
    objective = None if is_auto(cfg) else objective_from_config(cfg)  # auto: chosen once the weights are loaded
    if objective is not None:
        install(model, objective, fusion=cfg.model.loss_fusion, check_finite=cfg.model.check_finite)
    truncate = cfg.data.truncate == "right"
    return Session(cfg, rank, parallel_state.get_tensor_model_parallel_group(), tokenizer, train_examples,
                   validation_examples, encode(train_examples, tokenizer, seq_length, truncate),
                   encode(validation_examples, tokenizer, seq_length, truncate), model, objective)


def load_base_weights(session: Session) -> None:
    """Start from another run's final weights (a pre-trained base model), when the recipe names one."""
    base_dir = session.cfg.model.pretrained_checkpoint
    if not base_dir:
        return
    base = load_checkpoint(RunFolder(base_dir).checkpoints, rank=session.rank)
    if base is None:
        raise FileNotFoundError(f"no checkpoint under {base_dir}")
    session.model.load_state_dict(base["model"])


def completion_probabilities(model, data: Dict[str, torch.Tensor], seq_length: int, batch_size: int = 64) -> torch.Tensor:
    """The model's p of every completion token of `data` (1-D), without training."""
    batches = [{k: v[start:start + batch_size] for k, v in data.items()}
               for start in range(0, data["tokens"].shape[0], batch_size)]
    return measure_completion_probabilities(model, batches, causal_mask(seq_length))


def probe_base(cfg: DictConfig, run_dir: Path, num_examples: int = 512):
    """The probe of the CPU engine: base-model statistics on the training data and the recommendation."""
    from ...probe import probability_stats, recommend, write_probe_report

    session = start_session(cfg)
    load_base_weights(session)
    sample = {k: v[:num_examples] for k, v in session.train_data.items()}
    values = completion_probabilities(session.model, sample, cfg.model.seq_length)
    if session.rank == 0:
        return write_probe_report(values, run_dir, f"{cfg.name}: base model on {cfg.data.task}")
    stats = probability_stats(values)  # the same values on every tensor-parallel rank
    return stats, recommend(stats)


def evaluate_latest(cfg: DictConfig, run_dir: Path) -> dict:
    """Evaluate the run's latest checkpoint on the held-out set (the `eval` command of the CPU engine)."""
    session = start_session(cfg)
    state = load_checkpoint(RunFolder(run_dir).checkpoints, rank=session.rank)
    if state is None:
        raise FileNotFoundError(f"no checkpoint under {run_dir}")
    session.model.load_state_dict(state["model"])
    if session.objective is None:  # model.loss=auto: the choice the run made at its start
        session.objective = read_auto_choice(run_dir).objective
    return report(session, run_dir)


def report(session: Session, run_dir: Path, extra: dict = None) -> dict:
    summary = evaluate(session.model, session.validation_examples, session.tokenizer, session.cfg, run_dir,
                       session.rank, session.objective, extra)
    if session.rank == 0:
        for name, acc in summary["accuracy"].items():
            n = summary["num_samples"][name]
            print(f"held-out {name}: accuracy {acc:.1%} ({round(acc * n)}/{n})  objective {session.objective}",
                  file=sys.stderr)
        print(f"run directory: {run_dir} (metrics.jsonl, training.png, summary.json, checkpoints/)",
              file=sys.stderr)
    return summary


class SFTRecipe:
    """The CPU engine's fine-tuning run as a recipe: `setup` (model, optimizer, schedule, resume),
    `train_step` (one optimizer step over a global batch), `save` (a checkpoint), `record_histogram`
    (p on the validation completions), and `finish` (plot and held-out evaluation). `run` strings
    them together; call it in every torchrun worker."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.folder = RunFolder(self.run_dir)
        self.ckpt_dir = self.folder.checkpoints
        self.log = MetricsLog(self.folder.metrics)

    def setup(self) -> None:
        cfg = self.cfg
        self.session = session = start_session(cfg)
        self.model, self.objective, self.rank = session.model, session.objective, session.rank
        self.seq_length = cfg.model.seq_length
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
        )
        self.steps = total_steps(cfg, len(session.train_examples))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg, self.steps))
        self.start = self._resume()
        if self.objective is None:  # model.loss=auto: decided once, before the first step, then kept
            self.objective = session.objective = self._auto_objective()
            install(self.model, self.objective, fusion=cfg.model.loss_fusion, check_finite=cfg.model.check_finite)
        micro = cfg.trainer.micro_batch_size
        self.position_ids = torch.arange(self.seq_length)[None].expand(micro, -1)
        self.attention_mask = causal_mask(self.seq_length)

    def _resume(self) -> int:
        """The step to start from: the latest checkpoint's, else 0 (from the base weights, if any)."""
        if self.rank == 0:  # step folders an interrupted save left past `latest`
            remove_unfinished_steps(self.ckpt_dir)
        state = load_checkpoint(self.ckpt_dir, rank=self.rank)
        start = 0
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            start = state["step"]
            if start > self.steps:
                raise ValueError(f"{self.run_dir} holds a checkpoint at step {start}, past the run's {self.steps} "
                                 f"steps: evaluate it, raise trainer.max_steps, or use another checkpoint.dir")
        else:
            load_base_weights(self.session)
        if self.rank == 0:
            self.log.rewind(start)
            if start:
                print(f"resuming {self.run_dir} from step {start} of {self.steps}", file=sys.stderr)
        return start

    def _auto_objective(self):
        """model.loss=auto: decided once from the initial model's p on the first model.auto_batches
        training batches (probe.decide_auto), also recorded in metrics.jsonl."""
        cfg, data = self.cfg, self.session.train_data

        def measure():
            indices = torch.cat([batch_indices(s, cfg.trainer.global_batch_size, len(self.session.train_examples),
                                               cfg.trainer.seed) for s in range(cfg.model.auto_batches)])
            return completion_probabilities(self.model, {k: v[indices] for k, v in data.items()}, self.seq_length)

        # the same values, hence the same choice, on every tensor-parallel rank
        choice, new = decide_auto(self.run_dir, cfg.model.auto_batches, measure, started=bool(self.start),
                                  writer=self.rank == 0)
        if new and self.rank == 0:
            self.log.append({"event": "auto", "step": 0, **choice.to_dict()})
        return choice.objective

    def record_histogram(self, step: int) -> None:
        values = completion_probabilities(self.model, self.session.validation_data, self.seq_length)
        if self.rank == 0:
            self.log.append({"event": "prob_hist", "step": step, "counts": probability_histogram(values),
                             "mean_p": float(values.double().mean())})

    def train_step(self, step: int) -> dict:
        """One optimizer step (0-based `step`) over its global batch; returns the step's record."""
        cfg, model, train_data = self.cfg, self.model, self.session.train_data
        began = time.perf_counter()
        indices = batch_indices(step, cfg.trainer.global_batch_size, len(self.session.train_examples), cfg.trainer.seed)
        self.optimizer.zero_grad(set_to_none=True)
        totals = torch.zeros(6)  # loss sum, kept tokens, p sum, masked-in tokens, power sum, micro-batches
        chunks = indices.split(cfg.trainer.micro_batch_size)
        reduced = 0.0  # the loss differentiated: see micro_batch_loss
        for chunk in chunks:
            tokens, labels, loss_mask = (train_data[k][chunk] for k in ("tokens", "labels", "loss_mask"))
            per_token = model(tokens, self.position_ids[: len(chunk)], self.attention_mask,
                              labels=supervised_labels(labels, loss_mask))
            out = last_output(model)
            loss_sum, num_kept, metrics = objective_loss_terms(per_token, out.prob, out.kept, loss_mask, out.power)
            if cfg.model.loss_reduction == "micro_batch":
                loss = micro_batch_loss(loss_sum, num_kept, len(chunks))
                loss.backward()
                reduced += float(loss)
            else:
                loss_sum.backward()
            totals[:2] += metrics["lm loss"]
            totals[2:4] += metrics["target prob"]
            if "power" in metrics:  # adaptive_power's m
                totals[4:6] += metrics["power"]
        kept = float(totals[1])
        if cfg.model.loss_reduction != "micro_batch":
            reduced = float(totals[0]) / max(kept, 1.0)
            for p in model.parameters():  # per-token loss: divide by the kept tokens of the global batch
                if p.grad is not None:
                    p.grad.div_(max(kept, 1.0))
        norm = grad_norm_and_clip(model, cfg.optim.grad_clip, self.session.tp_group)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        record = {"event": "train", "step": step + 1, "loss": reduced,
                  "target_prob": float(totals[2] / totals[3]), "kept_fraction": kept / float(totals[3]),
                  "lr": lr, "grad_norm": norm, "seconds": time.perf_counter() - began,
                  **({"power": float(totals[4] / totals[5])} if totals[5] else {})}
        if self.rank == 0:
            self.log.append(record)
        return record

    def save(self, done: int) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "step": done}
        save_checkpoint(self.ckpt_dir, done, state, rank=self.rank)

    def finish(self) -> dict:
        extra = {}
        if self.rank == 0:
            warnings = [r["message"] for r in self.log.records("warning")]
            plot_training(self.log.records("train"), self.log.records("prob_hist"), self.folder.training_plot,
                          f"{self.cfg.name}: {self.objective}")
            if warnings:
                extra["warnings"] = warnings
            if is_auto(self.cfg):
                extra["auto"] = read_auto_choice(self.run_dir).to_dict()
        summary = report(self.session, self.run_dir, extra or None)
        assert latest_step(self.ckpt_dir) == self.steps
        return summary

    def run(self) -> dict:
        """Train (or resume) and evaluate. Returns the evaluation summary."""
        self.setup()
        cfg, steps = self.cfg, self.steps
        if self.start == 0:
            self.record_histogram(0)
        bar = tqdm(total=steps, initial=self.start, desc=f"sft {self.objective.name}", disable=self.rank != 0,
                   file=sys.stderr, dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 10.0)
        zero_kept: List[dict] = []  # the current run of steps that kept no token
        for step in range(self.start, steps):
            record = self.train_step(step)
            bar.set_postfix(loss=f"{record['loss']:.3f}", p=f"{record['target_prob']:.3f}",
                            kept=f"{record['kept_fraction']:.2f}", refresh=False)
            bar.update(1)
            done = step + 1
            zero_kept = zero_kept + [record] if self.objective.is_thresholded and record["kept_fraction"] == 0 else []
            if len(zero_kept) == ZERO_KEPT_STEPS and self.rank == 0 and not self.log.records("warning"):
                message = zero_kept_warning(self.objective, f"at steps {zero_kept[0]['step']}-{done}",
                                            sum(r["target_prob"] for r in zero_kept) / len(zero_kept),
                                            detail=f", threshold {self.objective.threshold:g}")
                bar.write(message, file=sys.stderr)  # above the progress bar, once per run
                self.log.append({"event": "warning", "step": done, "message": message})
            if cfg.trainer.hist_interval and done % cfg.trainer.hist_interval == 0 and done < steps:
                self.record_histogram(done)
            saved = done % cfg.trainer.save_interval == 0 or done == steps
            if saved:
                if done == steps:
                    self.record_histogram(done)
                self.save(done)
            if done < steps and stop_requested():
                if not saved:
                    self.save(done)
                if self.rank == 0:
                    self.log.append({"event": "stopped", "step": done})
                bar.close()
                raise StopTraining(done, self.rank, self.run_dir)
        bar.close()
        return self.finish()


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train (or resume) and evaluate; call in every torchrun worker. Returns the evaluation summary."""
    return SFTRecipe(cfg, run_dir).run()
