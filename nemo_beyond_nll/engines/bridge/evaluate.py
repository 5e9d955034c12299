"""The GPU evaluation of a Bridge run: export, vLLM, and the resumable runner of `eval`.

- :func:`export_hf_checkpoint`: the run's latest Megatron checkpoint in Hugging Face format,
  written once by Megatron-Bridge's `AutoBridge.export_ckpt`;
- :func:`run_gpu_eval`: export, vLLM and :func:`~nemo_beyond_nll.eval.runner.evaluate_benchmarks`
  for a bridge recipe; run it as one process on a GPU node (vLLM spreads the model over
  `model.tensor_parallel` GPUs itself); :func:`describe_gpu_eval` says what it would do.

An export found in place is reused without importing Megatron-Bridge, so the export can run in the
NeMo container and the evaluation where vLLM is installed. vLLM and Megatron-Bridge need CUDA, so
both are imported inside the functions that use them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Callable, Union

from ...config import ConfigError, is_auto, objective_from_config
from ...eval.backends import BackendUnavailable, load_vllm, with_prompt_template
from ...eval.sampling import recipe_sampling
from ...run_folder import RunFolder, held

_ITERATION = re.compile(r"iter_(\d+)")


def latest_checkpoint(checkpoints_dir: Union[str, Path]) -> Path:
    """The highest-numbered `iter_*` folder under `checkpoints_dir` (the one AutoBridge would load)."""
    checkpoints_dir = Path(checkpoints_dir)
    found = []
    if checkpoints_dir.is_dir():
        for path in checkpoints_dir.iterdir():
            match = _ITERATION.fullmatch(path.name)
            if match and path.is_dir():
                found.append((int(match.group(1)), path))
    if not found:
        raise FileNotFoundError(f"no Megatron checkpoint (iter_* folder) in {checkpoints_dir}: train the recipe first")
    return max(found)[1]


def export_hf_checkpoint(cfg) -> Path:
    """Export the run's latest checkpoint to `<run>/hf/<iter_N>` in Hugging Face format; returns that
    folder. An existing export is reused: the folder only appears once the export has finished."""
    folder = RunFolder.of(cfg)
    iteration = latest_checkpoint(folder.checkpoints)
    target = folder.hf_exports / iteration.name
    if target.is_dir():
        return target
    try:
        from megatron.bridge import AutoBridge
    except ImportError as err:
        raise BackendUnavailable(f"exporting a checkpoint needs Megatron-Bridge (the NGC NeMo container), "
                                 f"and it does not import here ({str(err).splitlines()[0]})") from None
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by an export that died
    staging.parent.mkdir(parents=True, exist_ok=True)
    # The Bridge built from the backbone knows the architecture's weight mapping; the checkpoint
    # holds the fine-tuned weights.
    AutoBridge.from_hf_pretrained(cfg.model.hf_path).export_ckpt(str(iteration), str(staging))
    os.replace(staging, target)
    return target


def training_used_chat_template(cfg) -> bool:
    """Whether the recipe's training prompts were built with a chat template, as the data builder's
    report beside data.train records; then the benchmark prompts need one too."""
    from ...data.pipeline import REPORT_FILE

    if not cfg.data.train:
        return False
    report = Path(cfg.data.train).parent / REPORT_FILE
    if not report.is_file():
        return False
    try:
        options = json.loads(report.read_text(encoding="utf-8")).get("options", {})
    except (json.JSONDecodeError, AttributeError):
        return False
    return bool(isinstance(options, dict) and options.get("chat_template"))


def _chat_template(model_dir: Path) -> Callable[[str], str]:
    from ...data.pipeline import hf_chat_template

    try:
        from transformers import AutoTokenizer
    except ImportError as err:
        raise BackendUnavailable(f"the chat template needs transformers ({str(err).splitlines()[0]})") from None
    return hf_chat_template(AutoTokenizer.from_pretrained(str(model_dir)))


def _check_eval_config(cfg):
    """The recipe's eval section, checked; returns {benchmark: Sampling}."""
    from ...eval.benchmark_sets import BENCHMARKS

    if cfg.engine != "bridge":
        raise ConfigError(f"run_gpu_eval evaluates engine=bridge recipes, got engine={cfg.engine}")
    if not cfg.eval.benchmarks:
        raise ConfigError(f"eval.benchmarks is empty; name some of {', '.join(BENCHMARKS)}")
    try:
        return recipe_sampling(cfg.eval)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def describe_gpu_eval(cfg) -> str:
    """What :func:`run_gpu_eval` would do, for a dry run: the checkpoint and its export, vLLM's
    settings, where each benchmark's rows come from, the files written. Needs neither vLLM nor Bridge."""
    from ...eval.benchmark_sets import benchmark_source, default_source, get_benchmark

    sampling = _check_eval_config(cfg)
    folder = RunFolder.of(cfg)
    if cfg.eval.model == "base":
        lines = ["# GPU evaluation of the untrained backbone: generate with vLLM, grade",
                 f"#   model: {cfg.model.hf_path} as published (eval.model=base; no checkpoint, no export)"]
    else:
        lines = ["# GPU evaluation: export to Hugging Face format, generate with vLLM, grade"]
        try:
            iteration = latest_checkpoint(folder.checkpoints)
            export = folder.hf_exports / iteration.name
            lines.append(f"#   checkpoint {iteration} -> {export}" + (" (exported already)" if export.is_dir() else ""))
        except FileNotFoundError:
            lines.append(f"#   checkpoint: none yet in {folder.checkpoints} (train first)")
    lines.append(f"#   vLLM: tensor_parallel={cfg.model.tensor_parallel}, "
                 f"chat template: {'yes' if training_used_chat_template(cfg) else 'no'}")
    for name in cfg.eval.benchmarks:
        try:
            source = benchmark_source(name, files=dict(cfg.eval.benchmark_files), directory=cfg.eval.benchmark_dir)
        except ValueError as err:
            raise ConfigError(f"eval: {err}") from None
        where = source if source is not None else default_source(name, cfg.eval.num_samples)
        limit = "" if cfg.eval.num_samples is None else f", first {cfg.eval.num_samples}"
        lines.append(f"#   {name} ({get_benchmark(name).domain}{limit}): {where}; {sampling[name].describe()}")
    lines.append(f"#   writes {folder.eval_dir}/<benchmark>.jsonl and {folder.summary}")
    return "\n".join(lines) + "\n"


def _load_benchmarks(cfg):
    from ...eval.benchmark_sets import load_benchmarks

    try:
        return load_benchmarks(list(cfg.eval.benchmarks), files=dict(cfg.eval.benchmark_files),
                               directory=cfg.eval.benchmark_dir, num_samples=cfg.eval.num_samples)
    except ValueError as err:
        raise ConfigError(f"eval: {err}") from None
    except OSError as err:  # the hub is unreachable (datasets raises ConnectionError)
        raise ConfigError(f"eval: cannot load the benchmarks from the Hugging Face hub "
                          f"({str(err).splitlines()[0]}); set eval.benchmark_dir to local copies") from None


def _evaluated_objective(cfg, folder: RunFolder, base: bool):
    if base:
        return "base"
    if is_auto(cfg):  # the choice the run made at its start
        from ...probe import read_auto_choice

        return read_auto_choice(folder.root).objective
    return objective_from_config(cfg)


def _generators(cfg, sampling, model_dir) -> dict:
    """One `generate` per benchmark (its SamplingParams), all on one vLLM model."""
    model = load_vllm(model_dir, tensor_parallel=cfg.model.tensor_parallel, seed=cfg.trainer.seed)
    template = _chat_template(model_dir) if training_used_chat_template(cfg) else None
    generate = {}
    for name, settings in sampling.items():
        generate[name] = model.generator(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                         top_p=settings.top_p, num_generations=settings.num_generations)
        if template is not None:
            generate[name] = with_prompt_template(generate[name], template)
    return generate


def print_summary(summary: dict, objective, folder: RunFolder) -> None:
    """Each benchmark's accuracy (and mean@k, pass@k, figfont's metrics, per source) on stderr."""
    for name, accuracy in summary["accuracy"].items():
        count, k = summary["num_samples"][name], summary["num_generations"][name]
        line = f"{name}: accuracy {accuracy:.1%} ({round(accuracy * count)}/{count})"
        if k > 1:
            passes = summary["pass_at_k"][name]
            line += f", mean@{k} {summary['mean_at_k'][name]:.1%}, pass@{k} {passes[str(k)]:.1%}"
        for metric, value in summary.get("figfont_metrics", {}).get(name, {}).items():
            line += f", {metric} {value:.1%}"
        for source, scores in summary.get("by_source", {}).get(name, {}).items():
            line += f"\n  {source}: {scores['accuracy']:.1%} ({scores['num_samples']})"
        if name in summary.get("source_average", {}):
            line += f"\n  average over sources: {summary['source_average'][name]:.1%}"
        print(line, file=sys.stderr)
    print(f"average {summary['average']:.1%}  objective {objective}  ({folder.summary})", file=sys.stderr)


def run_gpu_eval(cfg) -> int:
    """Evaluate a bridge recipe's fine-tuned model on eval.benchmarks: export the latest checkpoint,
    generate with vLLM (each benchmark with its sampling settings, see :mod:`...eval.sampling`;
    model.tensor_parallel GPUs), grade, and write the run folder's eval records and summary."""
    from ...eval.runner import evaluate_benchmarks

    sampling = _check_eval_config(cfg)
    folder = RunFolder.of(cfg)
    base = cfg.eval.model == "base"  # the untrained backbone: no checkpoint to find or export
    try:  # before the export and the model load, so that a missing piece costs no GPU time
        if not base:
            latest_checkpoint(folder.checkpoints)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    benchmarks = _load_benchmarks(cfg)
    # Every input checked, nothing written yet: now one writer of the eval records and the summary.
    with held(folder.root):
        objective = _evaluated_objective(cfg, folder, base)
        model_dir = cfg.model.hf_path if base else export_hf_checkpoint(cfg)
        summary = evaluate_benchmarks(benchmarks, _generators(cfg, sampling, model_dir), folder.root,
                                      sampling=sampling, objective=str(objective),
                                      loss="base" if base else objective.name)
    print_summary(summary, objective, folder)
    return 0
