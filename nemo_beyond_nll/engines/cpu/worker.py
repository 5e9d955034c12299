"""torchrun entry of the CPU engine: `python -m nemo_beyond_nll.engines.cpu.worker RUN_DIR/config.yaml train|eval|probe|continuum`.

A worker dies with torchrun (parent-death signal SIGKILL: with torchrun gone, nobody holds the run
folder's lock any more, so nothing may write there). SIGTERM or SIGINT, which torchrun sends when
it is stopped, ends training cleanly: the ranks agree on it after the current step, save a
checkpoint and exit. Evaluation and the probe simply die (their files are written atomically).
"""

import signal
import sys
import warnings
from pathlib import Path

if __name__ == "__main__":  # armed first: torchrun may die while torch is still being imported
    from ...utils.processes import arm_parent_death_signal

    arm_parent_death_signal(signal.SIGKILL)

from torch.distributed.elastic.multiprocessing.errors import record  # noqa: E402


@record  # a worker's traceback reaches torchrun's failure report
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.filterwarnings("ignore", module="megatron")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from omegaconf import OmegaConf

    from ...config import ConfigError, check_started_world

    config_path, mode = Path(argv[0]), argv[1]
    cfg = OmegaConf.load(config_path)
    try:  # the processes torchrun started, before any process group or model (other ranks exit 2 silently)
        check_started_world(cfg)
    except ConfigError as err:
        print(f"nemo-beyond-nll: error: {err}", file=sys.stderr)
        return 2
    from .runtime import shutdown_distributed
    from .continuum import run_continuum
    from .crossover import run_sweep
    from .trainer import StopTraining, evaluate_latest, probe_base, request_stop, train

    if mode in ("train", "continuum"):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, request_stop)
    try:
        if mode == "continuum" and cfg.continuum.sweep.pretrain_steps:
            mode = "sweep"
        {"train": train, "eval": evaluate_latest, "probe": probe_base, "continuum": run_continuum,
         "sweep": run_sweep}[mode](cfg, config_path.parent)
    except StopTraining as stop:
        if stop.rank == 0:
            print(f"stopped at step {stop.step}: checkpoint saved in {stop.run_dir}", file=sys.stderr, flush=True)
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
