"""torchrun, stopped without a traceback: `python -m nemo_beyond_nll.engines.torchrun [--stop-line] ARGS`
takes torchrun's own arguments. A signal makes torchrun stop its workers and raise SignalException,
whose traceback would follow the run's one-line stop message; here it ends the process with exit
code 128 + signal instead. With --stop-line (recipes/launch/torchrun.sh) it then prints the stop
line itself, last; without it (the CPU engine) the CLI that started it prints its own.
"""

from __future__ import annotations

import signal
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import record
from torch.distributed.run import parse_args, run

STOP_LINE = "--stop-line"


@record  # as torchrun's own main: a worker's failure is reported (and its error file kept) as usual
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stop_line = argv[:1] == [STOP_LINE]
    try:
        run(parse_args(argv[1:] if stop_line else argv))
    except SignalException as stop:  # the workers are stopped already
        if stop_line:
            print(f"nemo-beyond-nll: stopped by {signal.Signals(stop.sigval).name}: run the same command to resume "
                  f"from the run's last saved checkpoint", file=sys.stderr, flush=True)
        return 128 + int(stop.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
