"""The torchrun harness surfaces a worker's exception (with its rank and traceback) and returns the
ranks' reports as values."""

import pytest

WORKER = '''
import rank_report
import torch.distributed as dist
from tp_checks import fail


def main():
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    dist.barrier()
    dist.destroy_process_group()
    if rank == {bad}:
        fail("planted mismatch")
    return {{"rank": rank}}


if __name__ == "__main__":
    rank_report.run(main)
'''


def test_reports_come_back_in_rank_order(torchrun, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(bad=-1))
    assert torchrun(str(script), 2) == [{"rank": 0}, {"rank": 1}]


def test_a_worker_exception_fails_the_test_with_its_rank_and_traceback(torchrun, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(bad=1))
    with pytest.raises(pytest.fail.Exception) as failed:
        torchrun(str(script), 2)
    message = str(failed.value)
    assert "rank 1 of 2 raised" in message and "CheckFailed: rank 1: planted mismatch" in message
    assert "Traceback" in message
