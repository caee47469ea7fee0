"""A small generated track store shared by the analytics tests (four intersections, one day, 5·10^5 rows)."""

from __future__ import annotations

import pytest

from jellybean.analytics import generate, store

SMALL = dict(intersections=4, days=1.0, rows=500_000, seed=7)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("analytics") / "small.duckdb"
    columns, hz = generate.generate(generate.config(**SMALL))
    con = store.create(path, hz)
    store.insert(con, columns, shuffled=True)
    con.close()
    return path


@pytest.fixture()
def con(small_store):
    connection = store.connect(small_store)
    yield connection
    connection.close()
