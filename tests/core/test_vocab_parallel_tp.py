import pytest


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_sharded_equals_whole_vocabulary(torchrun, tp):
    output = torchrun("core/vocab_parallel_tp_worker.py", tp)
    assert output.count(f"TP={tp} equals the whole vocabulary") == tp
