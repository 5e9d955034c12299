"""Grading model outputs and comparing runs.

- :mod:`.math`: the final \\boxed{} answer and mathematical equivalence (math-verify, time-limited);
- :mod:`.medical`: the chosen option letter of a multiple-choice answer;
- :mod:`.figfont`: exact match of the decoded word;
- :mod:`.grade`: one output against one row written by :func:`nemo_beyond_nll.data.build`;
- :mod:`.compare`: a table and chart of accuracy per objective and benchmark.
"""
