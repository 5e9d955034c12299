import pytest


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_sharded_equals_whole_vocabulary(torchrun, tp):
    reports = torchrun("core/vocab_parallel_tp_worker.py", tp)
    assert [(r["tp"], r["objectives"], r["dtypes"], r["backend"]) for r in reports] == [(tp, 13, 3, "torch")] * tp


def test_check_finite_names_the_first_bad_row_and_its_rank(torchrun):
    reports = torchrun("core/finite_tp_worker.py", 2)
    assert [r["message"] for r in reports] == [reports[0]["message"]] * 2  # every rank raises the same
    assert reports[0]["message"].startswith("non-finite logits in row 4 (the first of 2 of 6 rows)")
    assert reports[0]["message"].endswith("in the vocabulary shard of tensor-parallel rank 1 of 2")
    assert all(r["clean_finite"] for r in reports)
