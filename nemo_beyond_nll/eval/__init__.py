"""Evaluating fine-tuned models on benchmarks and comparing runs, with no engine: an engine hands
the runner a `generate` function (the Bridge engine's GPU evaluation is engines/bridge/evaluate.py).

- :mod:`.benchmark_sets`: the paper's benchmarks (hub id, split, row -> prompt and answer), from the
  hub or local files;
- :mod:`.runner`: answer, grade (with :mod:`nemo_beyond_nll.domains`) and record benchmarks with
  any `generate(prompts)` function, resumably, and write the run's summary.json;
- :mod:`.backends`: vLLM generation, one model loaded for every sampling setting;
- :mod:`.sampling`: each benchmark's decoding (k generations, temperature, top-p, new tokens) from
  the recipe's eval section;
- :mod:`.metrics`: first-sample accuracy, mean@k, pass@k, figfont's metrics, accuracy per source;
- :mod:`.compare`: a table and chart of accuracy per objective and benchmark (and the metrics above).
"""
