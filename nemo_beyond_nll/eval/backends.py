"""Generation backends, and the GPU evaluation of a Megatron-Bridge run.

- :func:`vllm_generate`: a `generate(prompts) -> outputs` function over vLLM; :func:`load_vllm`
  loads the model once and gives one such function per sampling setting;
- :func:`export_hf_checkpoint`: the run's latest Megatron checkpoint in Hugging Face format,
  written once by Megatron-Bridge's `AutoBridge.export_ckpt`;
- :func:`run_gpu_eval`: export, vLLM and :func:`~nemo_beyond_nll.eval.runner.evaluate_benchmarks`
  for a bridge recipe; run it as one process on a GPU node (vLLM spreads the model over
  `model.tensor_parallel` GPUs itself); :func:`describe_gpu_eval` says what it would do.

An export found in place is reused without importing Megatron-Bridge, so the export can run in the
NeMo container and the evaluation where vLLM is installed.

vLLM and Megatron-Bridge need CUDA, so both are imported inside the functions that use them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Callable, List, Optional, Union

from .runner import Generate, evaluate_benchmarks
from .sampling import check_sampling, recipe_sampling

HF_EXPORT_DIR = "hf"  # <run>/hf/iter_NNNNNNN: one export per evaluated checkpoint
_ITERATION = re.compile(r"iter_(\d+)")


class BackendUnavailable(ImportError):
    """A backend library is not installed here; the message is one line that says which."""


def _positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class VLLMModel:
    """A model loaded in vLLM; :meth:`generator` gives a `generate(prompts)` per sampling setting."""

    def __init__(self, llm, sampling_params, seed: int):
        self.llm, self._sampling_params, self.seed = llm, sampling_params, seed

    def generator(self, *, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                  num_generations: int = 1) -> Generate:
        """`generate(prompts)`: in the prompts' order, one string per prompt (`num_generations` 1)
        or a list of `num_generations` strings (vLLM's `n`, sampled with the model's seed)."""
        check_sampling({"num_generations": num_generations, "temperature": temperature, "top_p": top_p,
                        "max_new_tokens": max_new_tokens})
        params = self._sampling_params(n=num_generations, temperature=float(temperature), top_p=float(top_p),
                                       max_tokens=max_new_tokens, seed=self.seed)
        llm = self.llm

        def generate(prompts: List[str]) -> List[Union[str, List[str]]]:
            results = llm.generate(list(prompts), params, use_tqdm=False)
            if num_generations == 1:
                return [result.outputs[0].text for result in results]
            return [[output.text for output in result.outputs] for result in results]

        return generate


def load_vllm(
    model_path: Union[str, Path],
    *,
    tensor_parallel: int = 1,
    seed: int = 0,
    tokenizer: Optional[str] = None,
    max_model_len: Optional[int] = None,
    gpu_memory_utilization: float = 0.9,
    dtype: str = "auto",
) -> VLLMModel:
    """Load `model_path` (a Hugging Face folder or id) in vLLM, once for every sampling setting."""
    if not str(model_path).strip():
        raise ValueError("model_path must name a Hugging Face folder or id")
    _positive_int("tensor_parallel", tensor_parallel)
    if max_model_len is not None:
        _positive_int("max_model_len", max_model_len)
    if not (isinstance(gpu_memory_utilization, (int, float)) and 0 < gpu_memory_utilization <= 1):
        raise ValueError(f"gpu_memory_utilization must lie in (0, 1], got {gpu_memory_utilization!r}")
    try:
        from vllm import LLM, SamplingParams
    except ImportError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BackendUnavailable(f"evaluation needs vLLM on a GPU machine, and it does not import here ({reason})") from None

    llm = LLM(model=str(model_path), tokenizer=tokenizer, tensor_parallel_size=tensor_parallel, dtype=dtype, seed=seed,
              max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization)
    return VLLMModel(llm, SamplingParams, seed)


def vllm_generate(
    model_path: Union[str, Path],
    *,
    tensor_parallel: int = 1,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    num_generations: int = 1,
    seed: int = 0,
    tokenizer: Optional[str] = None,
    max_model_len: Optional[int] = None,
    gpu_memory_utilization: float = 0.9,
    dtype: str = "auto",
) -> Generate:
    """Load `model_path` (a Hugging Face folder or id) in vLLM; return `generate(prompts) -> outputs`.

    Greedy by default (temperature 0), one output per prompt, in the prompts' order; with
    `num_generations` k > 1 (and a temperature above 0), a list of k outputs per prompt. Prompts go
    to the model as they are: apply a chat template first if the model was trained with one.
    """
    _positive_int("max_new_tokens", max_new_tokens)
    check_sampling({"num_generations": num_generations, "temperature": temperature, "top_p": top_p,
                    "max_new_tokens": max_new_tokens})
    model = load_vllm(model_path, tensor_parallel=tensor_parallel, seed=seed, tokenizer=tokenizer,
                      max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization, dtype=dtype)
    return model.generator(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                           num_generations=num_generations)


def with_prompt_template(generate: Generate, template: Callable[[str], str]) -> Generate:
    """`generate` on templated prompts (the records keep the benchmark's own prompt)."""

    def templated(prompts: List[str]) -> List[Union[str, List[str]]]:
        return generate([template(prompt) for prompt in prompts])

    return templated


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
    from ..engines.bridge.finetune import run_paths

    paths = run_paths(cfg)
    iteration = latest_checkpoint(paths["checkpoints"])
    target = paths["run"] / HF_EXPORT_DIR / iteration.name
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
    report.json beside data.train records; then the benchmark prompts need one too."""
    if not cfg.data.train:
        return False
    report = Path(cfg.data.train).parent / "report.json"
    if not report.is_file():
        return False
    try:
        options = json.loads(report.read_text(encoding="utf-8")).get("options", {})
    except (json.JSONDecodeError, AttributeError):
        return False
    return bool(isinstance(options, dict) and options.get("chat_template"))


def _chat_template(model_dir: Path) -> Callable[[str], str]:
    from ..data.pipeline import hf_chat_template

    try:
        from transformers import AutoTokenizer
    except ImportError as err:
        raise BackendUnavailable(f"the chat template needs transformers ({str(err).splitlines()[0]})") from None
    return hf_chat_template(AutoTokenizer.from_pretrained(str(model_dir)))


def _check_eval_config(cfg):
    """The recipe's eval section, checked; returns {benchmark: Sampling}."""
    from ..config import ConfigError
    from .benchmark_sets import BENCHMARKS

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
    from ..config import ConfigError
    from ..engines.bridge.finetune import run_paths
    from .benchmark_sets import benchmark_source, default_source, get_benchmark

    sampling = _check_eval_config(cfg)
    paths = run_paths(cfg)
    if cfg.eval.model == "base":
        lines = ["# GPU evaluation of the untrained backbone: generate with vLLM, grade",
                 f"#   model: {cfg.model.hf_path} as published (eval.model=base; no checkpoint, no export)"]
    else:
        lines = ["# GPU evaluation: export to Hugging Face format, generate with vLLM, grade"]
        try:
            iteration = latest_checkpoint(paths["checkpoints"])
            export = paths["run"] / HF_EXPORT_DIR / iteration.name
            lines.append(f"#   checkpoint {iteration} -> {export}" + (" (exported already)" if export.is_dir() else ""))
        except FileNotFoundError:
            lines.append(f"#   checkpoint: none yet in {paths['checkpoints']} (train first)")
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
    lines.append(f"#   writes {paths['run'] / 'eval'}/<benchmark>.jsonl and {paths['run'] / 'summary.json'}")
    return "\n".join(lines) + "\n"


def run_gpu_eval(cfg) -> int:
    """Evaluate a bridge recipe's fine-tuned model on eval.benchmarks: export the latest checkpoint,
    generate with vLLM (each benchmark with its sampling settings, see :mod:`.sampling`;
    model.tensor_parallel GPUs), grade, and write
    `<checkpoint.dir>/eval/<benchmark>.jsonl` and `<checkpoint.dir>/summary.json`."""
    from ..config import ConfigError, is_auto, objective_from_config
    from ..engines.bridge.finetune import run_paths
    from ..utils.run_lock import acquire_on_rank_zero
    from .benchmark_sets import load_benchmarks

    sampling = _check_eval_config(cfg)
    base = cfg.eval.model == "base"  # the untrained backbone: no checkpoint to find or export
    try:  # before the export and the model load, so that a missing piece costs no GPU time
        if not base:
            latest_checkpoint(run_paths(cfg)["checkpoints"])
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    try:
        benchmarks = load_benchmarks(list(cfg.eval.benchmarks), files=dict(cfg.eval.benchmark_files),
                                     directory=cfg.eval.benchmark_dir, num_samples=cfg.eval.num_samples)
    except ValueError as err:
        raise ConfigError(f"eval: {err}") from None
    except OSError as err:  # the hub is unreachable (datasets raises ConnectionError)
        raise ConfigError(f"eval: cannot load the benchmarks from the Hugging Face hub "
                          f"({str(err).splitlines()[0]}); set eval.benchmark_dir to local copies") from None
    # Every input checked, nothing written yet: now one writer of eval/*.jsonl.partial and summary.json.
    acquire_on_rank_zero(run_paths(cfg)["run"])
    if base:
        objective = "base"
    elif is_auto(cfg):  # the choice the run made at its start
        from ..probe import read_auto_choice

        objective = read_auto_choice(run_paths(cfg)["run"]).objective
    else:
        objective = objective_from_config(cfg)
    model_dir = cfg.model.hf_path if base else export_hf_checkpoint(cfg)
    model = load_vllm(model_dir, tensor_parallel=cfg.model.tensor_parallel, seed=cfg.trainer.seed)
    template = _chat_template(model_dir) if training_used_chat_template(cfg) else None
    generate = {}
    for name, settings in sampling.items():  # one SamplingParams per benchmark, one model for all
        generate[name] = model.generator(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                         top_p=settings.top_p, num_generations=settings.num_generations)
        if template is not None:
            generate[name] = with_prompt_template(generate[name], template)
    summary = evaluate_benchmarks(benchmarks, generate, run_paths(cfg)["run"], sampling=sampling,
                                  objective=str(objective), loss="base" if base else objective.name)
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
    print(f"average {summary['average']:.1%}  objective {objective}  ({run_paths(cfg)['run']}/summary.json)",
          file=sys.stderr)
    return 0
