"""Training data: builders for the paper's domains and the synthetic tasks of the CPU recipe."""
