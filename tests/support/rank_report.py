"""How a torchrun worker reports to its test: per rank, what it checked or the exception it raised.

A worker script ends with ``rank_report.run(main)``, which also leaves the process group cleanly.
``main()`` raises on the first failed check (``tp_checks.fail``) and returns a dict of what it
checked; either is written as JSON to
``$RANK_REPORTS/rank<r>.json``, and ``tests/conftest.py``'s ``run_torchrun`` reads the files back:
a worker's exception fails the test with that rank's traceback, and the dicts are returned so the
test asserts on values, not on printed text.
"""

import json
import os
import traceback
from pathlib import Path

REPORTS_ENV = "RANK_REPORTS"


def _write(rank: int, report: dict) -> None:
    folder = os.environ.get(REPORTS_ENV)
    if folder:
        path = Path(folder) / f"rank{rank}.json"
        path.write_text(json.dumps({"rank": rank, **report}))


def run(main) -> None:
    """Run this rank's `main()`; record its result or its exception (then re-raise: exit non-zero)."""
    rank = int(os.environ.get("RANK", "0"))
    try:
        facts = main() or {}
    except BaseException:
        _write(rank, {"error": traceback.format_exc()})
        raise
    _write(rank, {"facts": facts})
    _leave_process_group()


def _leave_process_group() -> None:
    """Wait for every rank, then destroy the group: a worker that exits with a live gloo group can
    abort in gloo's teardown ("terminate called without an active exception") after a clean run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def read(folder: Path, nproc: int):
    """(facts per rank in rank order or None for a missing report, {rank: traceback} of raised ranks)."""
    facts, errors = [None] * nproc, {}
    for path in Path(folder).glob("rank*.json"):
        report = json.loads(path.read_text())
        if "error" in report:
            errors[report["rank"]] = report["error"]
        else:
            facts[report["rank"]] = report["facts"]
    return facts, errors
