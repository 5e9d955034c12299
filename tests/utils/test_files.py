from nemo_beyond_nll.utils.files import atomic_write_text, remove_stale_temporaries


def test_stale_temporaries_of_interrupted_writes_are_removed(tmp_path):
    atomic_write_text(tmp_path / "summary.json", "{}")
    (tmp_path / ".summary.json.a1b2.tmp").write_text("{")  # what a kill between write and rename leaves
    (tmp_path / "checkpoints" / "step_000003").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_000003" / ".rank_00.pt.x.tmp").write_bytes(b"\0")
    (tmp_path / "notes.tmp").write_text("a user's file")  # not an atomic write's name: kept
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == [".rank_00.pt.x.tmp", ".summary.json.a1b2.tmp"]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["notes.tmp", "summary.json"]
    assert remove_stale_temporaries(tmp_path / "missing") == []
