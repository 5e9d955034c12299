"""Grading model outputs and comparing runs.

- :mod:`.math`: the final \\boxed{} answer and mathematical equivalence (math-verify, time-limited);
- :mod:`.medical`: the chosen option letter of a multiple-choice answer;
- :mod:`.figfont`: exact match of the decoded word;
- :mod:`.grade`: one output against one row written by :func:`nemo_beyond_nll.data.build`;
- :mod:`.compare`: a table and chart of accuracy per objective and benchmark;
- :mod:`.benchmarks`: the paper's benchmarks (hub id, split, row -> prompt and answer), from the
  hub or local files;
- :mod:`.runner`: answer, grade and record benchmarks with any `generate(prompts)` function,
  resumably, and write the run's summary.json;
- :mod:`.backends`: vLLM generation, the Hugging Face export of a Megatron-Bridge run, and
  :func:`~.backends.run_gpu_eval`, which ties them together.
"""
