"""torchrun entry of the CPU engine: `python -m nemo_beyond_nll.train.cpu_worker RUN_DIR/config.yaml train|eval`."""

import sys
import warnings
from pathlib import Path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.filterwarnings("ignore", module="megatron")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from omegaconf import OmegaConf

    from ..megatron.cpu import shutdown_distributed
    from .cpu_trainer import evaluate_latest, train

    config_path, mode = Path(argv[0]), argv[1]
    cfg = OmegaConf.load(config_path)
    try:
        (train if mode == "train" else evaluate_latest)(cfg, config_path.parent)
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
