"""A zoo directory's ``manifest.yaml`` (the ``kind: model-zoo`` spec): read, change, write.

A zoo directory holds the manifest and one folder per operator with its variant files::

    ZOO_DIR/manifest.yaml
    ZOO_DIR/<operator>/<variant>.onnx | .engine

Every change is a pure function from one frozen :class:`~jellybean.spec.zoo.Zoo` to a new one
(``merge_operator``, ``set_profile``, ``set_metrics``, ``merge_zoos``); ``update_manifest``
applies one under an exclusive lock on the directory and writes the result atomically (temp
file in the same directory, fsync, ``os.replace``), so a reader sees the old manifest or the new
one, never half of one, and two ``zoo profile`` runs against one directory do not lose each
other's profiles. A manifest is validated against ``Zoo`` before it is written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from jellybean.errors import JellyBeanError
from jellybean.spec.base import load_model, parse_model, unknown_name
from jellybean.spec.zoo import AccuracyTable, Profile, Variant, Zoo, ZooOperator

MANIFEST = "manifest.yaml"
_HEADER = (
    "# Model zoo manifest, written by `jellybean zoo build` / `jellybean zoo profile`.\n"
    "# model paths are relative to this file; profiles are keyed by hardware name (tiers/*.yaml).\n"
)


def manifest_path(zoo_dir: str | os.PathLike) -> Path:
    return Path(zoo_dir) / MANIFEST


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# Reading and writing ------------------------------------------------------------------------


def read_manifest(zoo_dir: str | os.PathLike) -> Zoo | None:
    """The zoo in ``zoo_dir``, or None when the directory has no manifest yet."""
    path = manifest_path(zoo_dir)
    if not path.exists():
        return None
    return load_model(Zoo, path)


def load_zoo(zoo_dir: str | os.PathLike) -> Zoo:
    """The zoo in ``zoo_dir``; a clear error when there is none."""
    zoo_dir = Path(zoo_dir)
    if not zoo_dir.is_dir():
        raise JellyBeanError(f"{zoo_dir}: not a directory; give the ZOO_DIR written by `jellybean zoo build`")
    zoo = read_manifest(zoo_dir)
    if zoo is None:
        raise JellyBeanError(f"{zoo_dir}: no {MANIFEST} here; build the zoo first with `jellybean zoo build`")
    return zoo


def zoo_to_data(zoo: Zoo) -> dict[str, Any]:
    """Plain YAML-ready data: defaults and empty fields left out, tuples as lists."""
    return _plain(zoo.model_dump(mode="python", exclude_defaults=True, exclude_none=True))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_manifest(zoo_dir: str | os.PathLike, zoo: Zoo) -> Path:
    """Write ``zoo`` to ``zoo_dir/manifest.yaml`` atomically; return the path."""
    zoo_dir = Path(zoo_dir)
    data = zoo_to_data(zoo)
    target = manifest_path(zoo_dir)
    parse_model(Zoo, data, str(target))  # what we write must load back
    text = _HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
    atomic_write_text(target, text)
    return target


def atomic_write_text(target: Path, text: str) -> None:
    """Write to a temp file beside ``target`` and replace it in one step."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def zoo_lock(zoo_dir: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock on the zoo directory itself (no lock file left behind)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(zoo_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def update_manifest(zoo_dir: str | os.PathLike, change: Callable[[Zoo | None], Zoo]) -> Zoo:
    """Read the manifest (None if absent), apply ``change``, write the result; all under the lock."""
    zoo_dir = Path(zoo_dir)
    with zoo_lock(zoo_dir):
        new = change(read_manifest(zoo_dir))
        write_manifest(zoo_dir, new)
    return new


# Changes (pure: each returns a new Zoo) -----------------------------------------------------


def _variant_key(v: Variant) -> tuple[str | None, str | None]:
    return v.model, v.sha256


def merge_operator(
    zoo: Zoo | None, operator: ZooOperator, zoo_name: str = "model-zoo", family: str | None = None
) -> Zoo:
    """Add ``operator``, or replace the variants of the operator of that name.

    With ``family``, only the variants named ``<family>-...`` are replaced; the operator's other
    variants (other base models of the same operator) stay, before the new ones.

    A replaced variant whose file is byte-identical (same path and sha256) keeps its measured
    profiles, metrics and accuracy; any other measurement is dropped with the old variant.
    Accuracy-table rows that name a variant which no longer exists are dropped.
    """
    if zoo is None:
        return Zoo(kind="model-zoo", name=zoo_name, operators=(operator,))
    old = zoo.operator(operator.name)
    if old is not None:
        kept = []
        for v in operator.variants:
            prev = old.variant(v.name)
            if prev is not None and v.sha256 and _variant_key(prev) == _variant_key(v):
                v = v.model_copy(update={
                    "profiles": {**prev.profiles, **v.profiles},
                    "metrics": {**prev.metrics, **v.metrics},
                    "accuracy": v.accuracy if v.accuracy is not None else prev.accuracy,
                })
            kept.append(v)
        if family is not None:
            others = [v for v in old.variants if not v.name.startswith(f"{family}-")]
            kept = others + [v for v in kept if v.name not in {o.name for o in others}]
        operator = operator.model_copy(update={"variants": tuple(kept)})
        operators = tuple(operator if o.name == operator.name else o for o in zoo.operators)
    else:
        operators = zoo.operators + (operator,)
    return _rebuild(zoo, operators)


def _rebuild(zoo: Zoo, operators: tuple[ZooOperator, ...]) -> Zoo:
    """A new Zoo with ``operators``, its accuracy table pruned of rows naming missing variants."""
    table = zoo.accuracy_table
    if table is not None:
        by_name = {o.name: o for o in operators}
        rows = tuple(
            r for r in table.rows
            if all(op in by_name and by_name[op].variant(var) is not None for op, var in zip(table.operators, r.variants))
        )
        table = AccuracyTable(operators=table.operators, rows=rows) if rows else None
    data = zoo.model_dump(mode="python")
    data["operators"] = [o.model_dump(mode="python") for o in operators]
    data["accuracy_table"] = table.model_dump(mode="python") if table is not None else None
    return Zoo.model_validate(data)


def _find(zoo: Zoo, operator: str, variant: str) -> tuple[ZooOperator, Variant]:
    op = zoo.operator(operator)
    if op is None:
        raise JellyBeanError(unknown_name("operator", operator, [o.name for o in zoo.operators]) +
                             "; build it first with `jellybean zoo build --operator`")
    var = op.variant(variant)
    if var is None:
        raise JellyBeanError(f"operator '{operator}': " + unknown_name("variant", variant, [v.name for v in op.variants]))
    return op, var


def replace_variant(zoo: Zoo, operator: str, variant: Variant) -> Zoo:
    op, _ = _find(zoo, operator, variant.name)
    new_op = op.model_copy(update={"variants": tuple(variant if v.name == variant.name else v for v in op.variants)})
    return _rebuild(zoo, tuple(new_op if o.name == operator else o for o in zoo.operators))


def set_profile(zoo: Zoo, operator: str, variant: str, hardware: str, profile: Profile,
                memory_mb: float | None = None) -> Zoo:
    """Set ``profiles[hardware]`` of one variant, keeping the profiles of other hardware.

    ``memory_mb`` (optional) raises the variant's memory requirement to at least that much.
    """
    if not hardware:
        raise JellyBeanError("hardware name is empty; give the name your hardware catalog uses")
    _, var = _find(zoo, operator, variant)
    update: dict[str, Any] = {"profiles": {**var.profiles, hardware: profile}}
    if memory_mb is not None:
        update["memory_mb"] = max(var.memory_mb, round(float(memory_mb), 1))
    return replace_variant(zoo, operator, var.model_copy(update=update))


def set_metrics(zoo: Zoo, operator: str, variant: str, metrics: dict[str, float] | None = None,
                accuracy: float | None = None) -> Zoo:
    """Merge evaluator ``metrics`` into one variant and/or set its ``accuracy`` factor."""
    _, var = _find(zoo, operator, variant)
    update: dict[str, Any] = {}
    if metrics:
        update["metrics"] = {**var.metrics, **{k: float(v) for k, v in metrics.items()}}
    if accuracy is not None:
        if not accuracy > 0:
            raise JellyBeanError(f"{operator}/{variant}: accuracy must be > 0 (got {accuracy})")
        update["accuracy"] = float(accuracy)
    return replace_variant(zoo, operator, var.model_copy(update=update))


def merge_zoos(base: Zoo, other: Zoo) -> Zoo:
    """Fold ``other`` (e.g. the manifest profiled on another machine) into ``base``.

    Operators and variants only in ``other`` are added; for a variant in both, profiles merge
    per hardware name (``other`` wins for a name both have), metrics merge, and ``other``'s
    accuracy wins when set. Variants whose files differ (sha256) cannot be merged: their
    measurements would describe different models.
    """
    operators = list(base.operators)
    for op in other.operators:
        mine = base.operator(op.name)
        if mine is None:
            operators.append(op)
            continue
        variants = list(mine.variants)
        for v in op.variants:
            cur = mine.variant(v.name)
            if cur is None:
                variants.append(v)
                continue
            if cur.sha256 and v.sha256 and cur.sha256 != v.sha256:
                raise JellyBeanError(
                    f"{op.name}/{v.name}: the two manifests describe different files (sha256 {cur.sha256[:12]} vs "
                    f"{v.sha256[:12]}); profile the same zoo build on both machines"
                )
            merged = cur.model_copy(update={
                "profiles": {**cur.profiles, **v.profiles},
                "metrics": {**cur.metrics, **v.metrics},
                "accuracy": v.accuracy if v.accuracy is not None else cur.accuracy,
                "memory_mb": max(cur.memory_mb, v.memory_mb),
                "sha256": cur.sha256 or v.sha256,
            })
            variants[[x.name for x in variants].index(v.name)] = merged
        operators[[o.name for o in operators].index(op.name)] = mine.model_copy(update={"variants": tuple(variants)})
    return _rebuild(base, tuple(operators))


def variant_files(zoo_dir: str | os.PathLike, zoo: Zoo) -> list[tuple[str, Variant, Path]]:
    """(operator, variant, absolute model path) for every variant that has a model file."""
    root = Path(zoo_dir)
    return [(op.name, v, root / v.model) for op in zoo.operators for v in op.variants if v.model]


def move_file(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; across filesystems copy beside ``dst`` first, then rename."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        import shutil

        tmp = dst.with_name(f".{dst.name}.incoming")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        os.unlink(src)

