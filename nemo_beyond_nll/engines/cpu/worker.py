"""torchrun entry of the CPU engine: `python -m nemo_beyond_nll.engines.cpu.worker RUN_DIR/config.yaml train|eval|probe|continuum`."""

import sys
import warnings
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record


@record  # a worker's traceback reaches torchrun's failure report
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.filterwarnings("ignore", module="megatron")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from omegaconf import OmegaConf

    from .runtime import shutdown_distributed
    from .continuum import run_continuum
    from .trainer import evaluate_latest, probe_base, train

    config_path, mode = Path(argv[0]), argv[1]
    cfg = OmegaConf.load(config_path)
    try:
        {"train": train, "eval": evaluate_latest, "probe": probe_base, "continuum": run_continuum}[mode](cfg, config_path.parent)
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
