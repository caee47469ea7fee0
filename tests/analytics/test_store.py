"""The track store: its schema, what it refuses, and the random physical order sampling relies on."""

from __future__ import annotations

import numpy as np
import pytest

from jellybean.analytics import store
from jellybean.analytics.errors import AnalyticsError


def _columns(n: int, t: np.ndarray | None = None) -> dict:
    rng = np.random.default_rng(1)
    return {"intersection": np.array(["I01"] * n, dtype=object), "approach": np.array(["N", "S"] * (n // 2), dtype=object),
            "track_id": np.arange(n), "t": np.sort(rng.uniform(0, 3600, n)) if t is None else t,
            "speed": rng.uniform(0, 15, n).astype(np.float32), "dwell": np.zeros(n, np.float32)}


def test_a_new_store_has_the_schema_and_its_rate(tmp_path):
    con = store.create(tmp_path / "s.duckdb", 2.5)
    store.insert(con, _columns(10_000))
    con.close()
    info = store.info(tmp_path / "s.duckdb")
    assert info.rows == 10_000 and info.hz == 2.5 and info.intersections == ["I01"]
    assert [(a.approach, a.rows) for a in info.approaches] == [("N", 5000), ("S", 5000)]
    con = store.connect(tmp_path / "s.duckdb")
    kinds = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'observations'").fetchall())
    con.close()
    assert kinds == store.COLUMNS


def test_rows_inserted_in_time_order_end_up_in_random_order(tmp_path):
    con = store.create(tmp_path / "s.duckdb", 1.0)
    store.insert(con, _columns(40_000))               # sorted by t, as a sink appends
    t = con.execute("SELECT t FROM observations").fetchnumpy()["t"]
    con.close()
    # a SYSTEM sample takes 2048 consecutive rows: each block must look like the whole table
    assert abs(np.corrcoef(np.arange(t.size), t)[0, 1]) < 0.03
    block_means = [t[k:k + 2048].mean() for k in range(0, t.size - 2048, 2048)]
    assert np.std(block_means) < 3 * t.std() / np.sqrt(2048)


def test_appending_keeps_both_batches_and_reshuffles(tmp_path):
    path = tmp_path / "s.duckdb"
    con = store.create(path, 1.0)
    store.insert(con, _columns(4096))
    store.insert(con, _columns(4096, t=np.full(4096, 7200.0)))
    t = con.execute("SELECT t FROM observations").fetchnumpy()["t"]
    con.close()
    late = t == 7200.0
    assert late.sum() == 4096
    assert 0.3 < late[:2048].mean() < 0.7          # the second batch is not all at the end


@pytest.mark.parametrize(("change", "words"), [
    ({"t": np.array([0.0, np.nan])}, ["t has 1 bad value", "row 1"]),
    ({"speed": np.array([1.0, -2.0], np.float32)}, ["speed", ">= 0"]),
    ({"dwell": np.array([np.inf, 0.0])}, ["dwell", "finite"]),
])
def test_bad_observations_are_refused_by_column_and_row(tmp_path, change, words):
    columns = _columns(2)
    columns.update(change)
    con = store.create(tmp_path / "s.duckdb", 1.0)
    with pytest.raises(AnalyticsError) as err:
        store.insert(con, columns)
    con.close()
    assert all(w in str(err.value) for w in words)


def test_missing_garbled_and_foreign_files_are_named_with_the_fix(tmp_path):
    with pytest.raises(AnalyticsError, match="no such track store.*analytics generate"):
        store.connect(tmp_path / "none.duckdb")
    (tmp_path / "junk.duckdb").write_bytes(b"not a database at all" * 100)
    with pytest.raises(AnalyticsError, match="junk.duckdb: not a readable DuckDB track store"):
        store.connect(tmp_path / "junk.duckdb")
    import duckdb

    other = duckdb.connect(str(tmp_path / "other.duckdb"))
    other.execute("CREATE TABLE x (a INT)")
    other.close()
    with pytest.raises(AnalyticsError, match="not a track store"):
        store.connect(tmp_path / "other.duckdb")
    with pytest.raises(AnalyticsError, match="already exists; pass --overwrite"):
        store.create(tmp_path / "other.duckdb", 1.0)
    with pytest.raises(AnalyticsError, match="hz"):
        store.create(tmp_path / "new.duckdb", float("nan"))


def test_a_store_another_process_writes_to_is_busy_not_broken(tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "busy.duckdb"
    con = store.create(path, 1.0)      # this process holds DuckDB's write lock until it closes
    try:
        probe = ("from jellybean.analytics import store\ntry:\n    store.connect(r'%s')\n"
                 "except Exception as e:\n    print(e)" % path)
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    finally:
        con.close()
    assert "in use by another process" in out.stdout and "rebuild" not in out.stdout, out.stdout + out.stderr
