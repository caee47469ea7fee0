"""The track store: one DuckDB file, one row per vehicle observation.

    observations(intersection VARCHAR, approach VARCHAR, track_id BIGINT, t DOUBLE, speed FLOAT, dwell FLOAT)
    store_info(key VARCHAR, value VARCHAR)      schema version and the observation rate `hz`
    approaches(intersection, approach, rows, t_min, t_max)   the catalog, rebuilt by every write

An observation is one vehicle seen once: in a CityFlow-layout scene one gt box (the scenario is the
intersection, the camera the approach, `hz` the camera's frame rate); from the history generator one
draw per vehicle every 1/hz seconds. `t` is seconds on the store's clock (the generator's 0 is
midnight of its first day), `speed` the ground speed in m/s, `dwell` how long the vehicle has been
stopped (speed < 1 m/s) so far, 0 while it moves.

Why the rows are in random physical order: DuckDB's SYSTEM sample keeps or skips whole vectors of
2048 consecutive rows, and it is the only sampling method that skips reading the rows it leaves out.
With the rows shuffled, a vector is 2048 rows drawn at random, so a SYSTEM sample is a simple random
sample of the rows and the estimators of jellybean.approx hold as they are. Every write therefore
ends with the table in random order (the generator shuffles before it inserts; appending rewrites
the table ordered by a hash of the row number). The price: the exact query cannot skip row groups
by time (zone maps) and scans the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jellybean.analytics.errors import AnalyticsError

SCHEMA_VERSION = "1"
TABLE = "observations"
COLUMNS = {"intersection": "VARCHAR", "approach": "VARCHAR", "track_id": "BIGINT", "t": "DOUBLE",
           "speed": "FLOAT", "dwell": "FLOAT"}
NUMERIC = ("track_id", "t", "speed", "dwell")


@dataclass(frozen=True)
class Approach:
    intersection: str
    approach: str
    rows: int
    t_min: float
    t_max: float


@dataclass(frozen=True)
class StoreInfo:
    path: Path
    rows: int
    hz: float
    approaches: tuple[Approach, ...]

    @property
    def intersections(self) -> list[str]:
        return sorted({a.intersection for a in self.approaches})


def _duckdb():
    import duckdb

    return duckdb


def create(path: Path | str, hz: float, *, overwrite: bool = False):
    """A new, empty store at ``path`` for observations taken ``hz`` times a second; the open connection."""
    path = Path(path)
    check_hz(hz)
    if path.exists():
        if not overwrite:
            raise AnalyticsError(f"{path}: already exists; pass --overwrite to replace it, or choose another path")
        path.unlink()
        Path(f"{path}.wal").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _duckdb().connect(str(path))
    columns = ", ".join(f"{name} {kind} NOT NULL" for name, kind in COLUMNS.items())
    con.execute(f"CREATE TABLE {TABLE} ({columns})")
    con.execute("CREATE TABLE store_info (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.execute("INSERT INTO store_info VALUES ('schema', ?), ('hz', ?)", [SCHEMA_VERSION, repr(float(hz))])
    _catalog(con)
    return con


def _catalog(con) -> None:
    # what exists and when, for checking a query's target without scanning the observations
    con.execute(f"CREATE OR REPLACE TABLE approaches AS SELECT intersection, approach, count(*) AS rows, "
                f"min(t) AS t_min, max(t) AS t_max FROM {TABLE} GROUP BY ALL ORDER BY ALL")


def connect(path: Path | str, *, read_only: bool = True):
    """An open connection to an existing store, checked: a DuckDB file with this schema."""
    path = Path(path)
    if not path.is_file():
        raise AnalyticsError(f"{path}: no such track store; make one with `jellybean analytics generate {path}` "
                             f"or `jellybean analytics load DATASET {path}`")
    duckdb = _duckdb()
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "lock" in first.lower():  # a writer elsewhere: the file is fine, it is busy
            raise AnalyticsError(f"{path}: in use by another process that writes to it ({first}); wait for it "
                                 "to finish") from None
        raise AnalyticsError(f"{path}: not a readable DuckDB track store ({first}); rebuild it with "
                             "`jellybean analytics generate` or `load`") from None
    try:
        found = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = ?", [TABLE]).fetchall())
        info = dict(con.execute("SELECT key, value FROM store_info").fetchall())
        con.execute("SELECT intersection, approach, rows, t_min, t_max FROM approaches LIMIT 0").fetchall()
    except duckdb.Error:
        con.close()
        raise AnalyticsError(f"{path}: a DuckDB file, but not a track store (no {TABLE} / store_info / approaches "
                             "tables); rebuild it with `jellybean analytics generate` or `load`") from None
    missing = [f"{n} {k}" for n, k in COLUMNS.items() if found.get(n) != k]
    if missing or info.get("schema") != SCHEMA_VERSION:
        con.close()
        what = f"columns {', '.join(missing)} missing or of another type" if missing else \
            f"schema version {info.get('schema')!r}, expected {SCHEMA_VERSION}"
        raise AnalyticsError(f"{path}: {what}; rebuild the store with `jellybean analytics generate` or `load`")
    try:
        check_hz(float(info.get("hz", "nan")))
    except (ValueError, AnalyticsError):
        con.close()
        raise AnalyticsError(f"{path}: store_info.hz {info.get('hz')!r} is not a positive rate; rebuild the store") from None
    return con


def scalar(con, sql: str, params=None):
    """The one value a query returns (fetched in full: DuckDB keeps a connection busy until a result is)."""
    return con.execute(sql, params or []).fetchall()[0][0]


def hz_of(con) -> float:
    return float(scalar(con, "SELECT value FROM store_info WHERE key = 'hz'"))


def info(path: Path | str) -> StoreInfo:
    """What the store holds: rows, rate, and each approach's rows and time range."""
    con = connect(path)
    try:
        rows = scalar(con, f"SELECT count(*) FROM {TABLE}")
        return StoreInfo(Path(path), int(rows), hz_of(con), approaches(con))
    finally:
        con.close()


def approaches(con) -> tuple[Approach, ...]:
    """The catalog: every approach with its rows and time range."""
    return tuple(Approach(*r) for r in con.execute("SELECT * FROM approaches ORDER BY ALL").fetchall())


def check_hz(hz: float) -> None:
    if not (isinstance(hz, (int, float)) and math.isfinite(hz) and hz > 0):
        raise AnalyticsError(f"hz {hz!r}: give the observation rate, a finite number of observations per vehicle "
                             "per second > 0")


def columns_checked(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The observation columns as arrays of one length, numbers finite, speeds and dwells >= 0."""
    if set(columns) != set(COLUMNS):
        raise AnalyticsError(f"observations: columns {sorted(columns)}; give exactly {', '.join(COLUMNS)}")
    import pandas as pd

    # names may come as a pandas Categorical (the generator's 10^7 rows): no Python string per row
    out = {name: (columns[name] if isinstance(columns[name], pd.Categorical) else np.asarray(columns[name]))
           for name in COLUMNS}
    sizes = {np.shape(a) for a in out.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise AnalyticsError(f"observations: columns of shapes {sorted(map(str, sizes))}; give 1-d columns of one length")
    for name in NUMERIC:
        values = out[name].astype(float)
        bad = np.flatnonzero(~np.isfinite(values) | ((values < 0) if name in ("speed", "dwell") else False))
        if bad.size:
            raise AnalyticsError(f"observations: {name} has {bad.size} bad value(s) (row {bad[0]}: {values[bad[0]]!r}); "
                                 "give finite numbers" + (" >= 0" if name in ("speed", "dwell") else ""))
    return out


def insert(con, columns: dict[str, np.ndarray], *, shuffled: bool = False, seed: int = 0) -> int:
    """Append observations and leave the table in random physical order (see the module docstring).

    ``shuffled``: the rows come already in random order and the table was empty, so no rewrite."""
    import pandas as pd

    checked = columns_checked(columns)
    frame = pd.DataFrame({name: (pd.Categorical(values) if COLUMNS[name] == "VARCHAR"
                                 and not isinstance(values, pd.Categorical) else values)
                          for name, values in checked.items()})
    before = scalar(con, f"SELECT count(*) FROM {TABLE}")
    select = ", ".join(f"CAST({n} AS {k})" for n, k in COLUMNS.items())
    con.register("_incoming", frame)
    try:
        con.execute(f"INSERT INTO {TABLE} SELECT {select} FROM _incoming")
    finally:
        con.unregister("_incoming")
    if not (shuffled and before == 0):
        # ordering by a hash of the row number is a pseudo-random permutation that the seed repeats
        con.execute(f"CREATE OR REPLACE TABLE {TABLE} AS SELECT * FROM {TABLE} ORDER BY hash(rowid + ?)", [int(seed)])
    _catalog(con)
    return len(frame)
