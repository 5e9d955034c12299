"""Generation backends: vLLM, loaded once per model (:func:`load_vllm`), with one
`generate(prompts) -> outputs` function per sampling setting (:meth:`VLLMModel.generator`), and
:func:`with_prompt_template` for models trained on templated prompts.

Greedy by default (temperature 0), one output per prompt, in the prompts' order; with
`num_generations` k > 1 (and a temperature above 0), a list of k outputs per prompt. Prompts go
to the model as they are: apply a chat template first if the model was trained with one.

vLLM needs CUDA, so it is imported inside the function that loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Union

from .runner import Generate
from .sampling import check_sampling


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


def with_prompt_template(generate: Generate, template: Callable[[str], str]) -> Generate:
    """`generate` on templated prompts (the records keep the benchmark's own prompt)."""

    def templated(prompts: List[str]) -> List[Union[str, List[str]]]:
        return generate([template(prompt) for prompt in prompts])

    return templated
