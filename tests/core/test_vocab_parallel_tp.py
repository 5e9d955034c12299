import pytest


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_sharded_equals_whole_vocabulary(torchrun, tp):
    reports = torchrun("core/vocab_parallel_tp_worker.py", tp)
    assert [(r["tp"], r["objectives"], r["dtypes"], r["backend"]) for r in reports] == [(tp, 9, 3, "torch")] * tp
