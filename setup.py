from pathlib import Path

from setuptools import find_packages, setup

# torch, megatron-core and transformer-engine come from the NGC NeMo container on GPU clusters,
# so they are not pinned for users; the `cpu` extra pins what a CPU machine (and CI) needs.
CPU = ["torch==2.13.0", "megatron-core==0.16.1"]
NEMO = [
    "nemo_toolkit==3.0.0",
    "hydra-core>1.3,<=1.3.2",  # nemo_toolkit 3.0's own cap; Megatron-Bridge 0.6 needs >=1.3.4 instead
    "lightning>2.2.1,<=2.4.0",
    "nv_one_logger_core",
    "nv_one_logger_training_telemetry",
    "nv_one_logger_pytorch_lightning_integration",
]
# Data builders and graders. math-verify's LaTeX parser runs on the ANTLR runtime that hydra-core
# also uses, and hydra-core pins 4.9.*, so math-verify is asked for the matching runtime.
DATA = [
    "datasets>=2.19,<6",
    "math-verify[antlr4_9_3]>=0.9,<0.10",
    "reasoning-gym>=0.1.25,<0.2",
]
# NeMo AutoModel (nemo_beyond_nll.automodel's loss_fn). Not in `all`: it brings transformers 5.x,
# which the default test environment does not need; tests/automodel builds its own environment.
AUTOMODEL = ["nemo-automodel==0.7.0"]
# Hugging Face Trainer and TRL (nemo_beyond_nll.hf): the versions tests/hf pins. Not in `all`, for the same reason.
HF = ["transformers==5.25.0", "trl==1.16.0"]
# triton runs the kernel tests on CPU through its interpreter (TRITON_INTERPRET=1).
# mkdocs builds docs/ in strict mode in the default suite (tests/test_docs.py).
TEST = ["pytest>=8", "hypothesis>=6", "triton==3.9.0", "mkdocs==1.6.1"] + DATA

setup(
    name="nemo_beyond_nll",
    version="0.1.0",
    description="Probability-based SFT objectives beyond -log p, as an exact vocab-parallel loss for Megatron/NeMo",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nemo_beyond_nll", "nemo_beyond_nll.*"]),
    package_data={"nemo_beyond_nll": ["recipes/paper/*.yaml"]},  # the paper's recipes, read by `reproduce`
    install_requires=[
        "torch>=2.3",
        "numpy",
        "omegaconf>=2.2,<2.4",
        "pyyaml",
        "hydra-core>=1.3,<1.4",  # a range both nemo_toolkit (the `nemo` extra) and Megatron-Bridge accept
        "tqdm",
        "matplotlib",
    ],
    extras_require={"cpu": CPU, "nemo": NEMO, "data": DATA, "test": TEST, "automodel": AUTOMODEL, "hf": HF, "all": CPU + NEMO + TEST},
    entry_points={"console_scripts": ["nemo-beyond-nll = nemo_beyond_nll.cli:main"]},
    license="Apache-2.0",
)
