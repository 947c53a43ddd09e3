import os
import time
from types import SimpleNamespace

from rtrec.errors import InvalidInputError
from rtrec.serve import inbox


def summary(accepted=0, duplicates=0, rejected=()):
    return SimpleNamespace(
        accepted=accepted,
        duplicates=duplicates,
        rejected=[SimpleNamespace(index=i, reason=r) for i, r in rejected],
    )


def test_pending_skips_partial_and_hidden_files(tmp_path):
    inbox.ensure_dirs(tmp_path)
    for name in ("b.jsonl", ".hidden.jsonl", "c.jsonl.tmp", "d.part"):
        (tmp_path / name).write_text("{}\n")
    (tmp_path / "items" / "cat.parquet").write_bytes(b"x")
    old = tmp_path / "a.parquet"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 100, time.time() - 100))
    got = [(p.name, items) for p, items in inbox.pending(tmp_path)]
    assert got[0] == ("a.parquet", False)
    assert sorted(got[1:]) == [("b.jsonl", False), ("cat.parquet", True)]


def test_good_file_moves_to_done(tmp_path):
    inbox.ensure_dirs(tmp_path)
    f = tmp_path / "e.jsonl"
    f.write_text("{}\n")
    out = inbox.process(f, False, lambda p, items: summary(accepted=3, duplicates=1), tmp_path)
    assert out.ok and out.accepted == 3 and out.duplicates == 1
    assert (tmp_path / "done" / "e.jsonl").exists() and not f.exists()
    assert not (tmp_path / "done" / "e.jsonl.reason").exists()


def test_partly_bad_file_lists_rejected_rows(tmp_path):
    inbox.ensure_dirs(tmp_path)
    f = tmp_path / "e.jsonl"
    f.write_text("{}\n")
    out = inbox.process(f, False, lambda p, items: summary(accepted=1, rejected=[(1, "user_id: missing")]), tmp_path)
    assert out.ok and out.rejected == 1
    reason = (tmp_path / "done" / "e.jsonl.reason").read_text()
    assert "1 rows rejected" in reason and "user_id: missing" in reason


def test_unusable_file_is_rejected_with_reason(tmp_path):
    inbox.ensure_dirs(tmp_path)
    f = tmp_path / "e.jsonl"
    f.write_text("nope")

    def boom(p, items):
        raise InvalidInputError("line 1 is not valid JSON")

    out = inbox.process(f, False, boom, tmp_path)
    assert not out.ok
    assert (tmp_path / "rejected" / "e.jsonl").exists()
    assert "line 1 is not valid JSON" in (tmp_path / "rejected" / "e.jsonl.reason").read_text()


def test_all_rows_rejected_and_wrong_suffix(tmp_path):
    inbox.ensure_dirs(tmp_path)
    f = tmp_path / "e.jsonl"
    f.write_text("{}\n")
    out = inbox.process(f, False, lambda p, items: summary(rejected=[(0, "ts: missing")]), tmp_path)
    assert not out.ok and "ts: missing" in out.reason
    g = tmp_path / "e.csv"
    g.write_text("a,b\n")
    out = inbox.process(g, False, lambda p, items: summary(accepted=1), tmp_path)
    assert not out.ok and "unsupported file type" in (tmp_path / "rejected" / "e.csv.reason").read_text()


def test_same_name_twice_keeps_both(tmp_path):
    inbox.ensure_dirs(tmp_path)
    for _ in range(2):
        f = tmp_path / "e.jsonl"
        f.write_text("{}\n")
        inbox.process(f, False, lambda p, items: summary(accepted=1), tmp_path)
    assert len([p for p in (tmp_path / "done").iterdir() if p.suffix == ".jsonl"]) == 2


def test_items_file_counts_rows(tmp_path):
    inbox.ensure_dirs(tmp_path)
    f = tmp_path / "items" / "c.jsonl"
    f.write_text("{}\n")
    out = inbox.process(f, True, lambda p, items: 7, tmp_path)
    assert out.ok and out.items and out.accepted == 7
