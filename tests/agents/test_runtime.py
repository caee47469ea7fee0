"""The agent runtime's parts: wire formats, routing weights, dedup/ordering/batching, backoff."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import numpy as np
import pytest

from jellybean.agents.items import Item, MessageError, decode_item, encode_item
from jellybean.agents.messages import (
    Assignment,
    Heartbeat,
    Task,
    decode_chunk,
    encode_chunk,
    parse_message,
)
from jellybean.agents.operators.base import Operator, OperatorConfig
from jellybean.agents.routing import Router, WeightedChoice, WorkerSpread
from jellybean.agents.tasks import TaskRunner
from jellybean.agents.telemetry import AgentTelemetry
from jellybean.agents.transport import Backoff


# -- wire formats --------------------------------------------------------------------------------
def _header(head: bytes) -> bytes:
    return b"JBD\x02" + len(head).to_bytes(4, "big") + head


def test_item_round_trip_keeps_blobs_arrays_and_trace():
    item = Item("train/S01/c001", 7, 123.5, "features", meta={"boxes": [[1, 2, 3, 4, 0.9]]},
                arrays={"embeddings": np.arange(12, dtype=np.float16).reshape(3, 4)},
                blobs=[b"\xff\xd8jpeg", b""], trace=[["hub", "detect", 1.0, 2.0]], session="replay-1")
    back = decode_item(encode_item(item), "t")
    assert back.key == ("train/S01/c001", "replay-1", 7)
    assert (back.stream, back.frame, back.capture_ts, back.kind) == (item.stream, 7, 123.5, "features")
    assert back.blobs == item.blobs and back.trace == item.trace and back.meta == item.meta
    np.testing.assert_array_equal(back.arrays["embeddings"], item.arrays["embeddings"])
    assert back.arrays["embeddings"].dtype == np.float16


@pytest.mark.parametrize("payload, words", [
    (b"", "shorter"),
    (b"XXX\x01\x00\x00\x00\x02{}", "not a JellyBean data message"),
    (b"JBD\x09\x00\x00\x00\x02{}", "version 9"),
    (b"JBD\x02\x00\x00\x10\x00{}", "runs past the end"),
    (b"JBD\x02\x00\x00\x00\x02{}", "stream"),
    (_header(b'{"stream": "s", "frame": 1, "capture_ts": NaN, "kind": "frame"}'), "NaN"),
    (_header(b'{"stream": "s", "frame": 1, "capture_ts": Infinity, "kind": "frame"}'), "Infinity"),
    (_header(b'{"stream": "s", "frame": 1, "capture_ts": 1e999, "kind": "frame"}'), "finite"),
    (_header(b'{"stream": "s", "frame": 1, "capture_ts": -5, "kind": "frame"}'), "capture_ts"),
    (_header(b'{"stream": "s", "frame": 99999999999999999999, "capture_ts": 1, "kind": "frame"}'), "frame"),
    (_header(b'{"stream": "s", "frame": 1, "capture_ts": 1, "kind": "frame", "session": "a/b"}'), "session"),
    (_header(b'{"stream": "s", "frame": 1, "capture_ts": 1, "kind": "f", "arrays": {"x": {"dtype": "float32", '
             b'"shape": [100000, 100000, 100000]}}}'), "shape"),
    (_header(b'{"stream": "s", "frame": 1, "capture_ts": 1, "kind": "f", "meta": {"a": ' + b"[" * 5000
             + b"]" * 5000 + b"}}"), "bad data header"),
])
def test_malformed_data_messages_name_the_topic_and_the_problem(payload, words):
    with pytest.raises(MessageError) as info:
        decode_item(payload, "jb/v1/data/hub/reid")
    assert "jb/v1/data/hub/reid" in str(info.value) and words in str(info.value)


def test_body_length_must_match_the_header():
    good = encode_item(Item("s", 1, 0.0, blobs=[b"abcdef"]))
    with pytest.raises(MessageError, match="body has"):
        decode_item(good[:-2], "t")


def test_control_messages_are_versioned_and_validated():
    hb = Heartbeat(agent="a", seq=3)
    assert parse_message(hb.to_bytes(), "t") == hb
    with pytest.raises(MessageError, match="version 2"):
        parse_message(b'{"v": 2, "kind": "heartbeat", "agent": "a", "seq": 1}', "jb/x")
    with pytest.raises(MessageError, match="seq"):
        parse_message(b'{"v": 1, "kind": "heartbeat", "agent": "a"}', "jb/x")
    with pytest.raises(MessageError, match="not JSON"):
        parse_message(b"\x00\x01", "jb/x")
    with pytest.raises(MessageError, match="expected a Assignment"):
        parse_message(hb.to_bytes(), "jb/x", Assignment)


def test_model_chunks_carry_their_checksum():
    payload = encode_chunk("f" * 64, "m.onnx", 0, 1, 5, b"hello")
    header, data = decode_chunk(payload, "t")
    assert data == b"hello" and header.total == 1
    with pytest.raises(MessageError, match="checksum"):
        decode_chunk(payload[:-1] + b"X", "t")


# -- routing -------------------------------------------------------------------------------------
def test_item_routing_follows_weights_exactly():
    choice = WeightedChoice({"hub": 3, "cloud": 1})
    counts = Counter(choice.pick("s") for _ in range(400))
    assert counts == {"hub": 300, "cloud": 100}


def test_stream_routing_is_sticky_and_splits_by_weight():
    choice = WeightedChoice({"hub": 3, "cloud": 1}, "stream")
    streams = [f"cam{i}" for i in range(2000)]
    first = {s: choice.pick(s) for s in streams}
    assert all(choice.pick(s) == first[s] for s in streams)
    share = Counter(first.values())["hub"] / len(streams)
    assert 0.70 < share < 0.80
    # Changing weights moves few streams: only towards the site that gained.
    choice.update({"hub": 3, "cloud": 2})
    moved = [s for s in streams if choice.pick(s) != first[s]]
    assert all(first[s] == "hub" for s in moved) and len(moved) < 0.25 * len(streams)


def test_global_routing_sends_everything_to_one_site_and_router_falls_back_to_placements():
    router = Router({"track->associate": {"hub": {"hub": 1.0}}}, {"associate": {"cloud": 2.0, "dc": 1.0}},
                    {"associate": "global"})
    assert router.next_site("track->associate", "hub", "a") == "hub"
    # No row for this site: where the operator is placed, all to the heaviest site.
    assert {router.next_site("track->associate", "edge", f"s{i}") for i in range(20)} == {"cloud"}
    router.update({}, {"associate": {"dc": 1.0}}, {"associate": "global"})
    assert router.next_site("track->associate", "hub", "a") == "dc"


def test_a_protected_operators_items_go_to_its_agents_in_turn_and_follow_updates():
    spread = WorkerSpread()
    assert spread.pick("reid", "hub") is None            # no agents listed: the site's shared topic
    spread.update({"reid": {"hub": {"a": 1.0, "b": 1.0}}}, {"reid": 2})
    picks = [spread.pick("reid", "hub") for _ in range(10)]
    assert all(x != y for x, y in zip(picks, picks[1:])), picks   # any two in a row differ (k = 2)
    assert Counter(picks) == {"a": 5, "b": 5}
    spread.update({"reid": {"hub": {"a": 1.0, "b": 1.0, "c": 2.0}}}, {"reid": 2})
    picks = [spread.pick("reid", "hub") for _ in range(40)]
    assert Counter(picks) == {"a": 10, "b": 10, "c": 20}           # by workers
    assert all(x != y for x, y in zip(picks, picks[1:])), picks
    # k = 3 over 5 agents: any 3 in a row differ, and the weights still hold (none above 1/3).
    spread.update({"reid": {"hub": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 2.0}}}, {"reid": 3})
    picks = [spread.pick("reid", "hub") for _ in range(60)]
    assert all(len(set(picks[i:i + 3])) == 3 for i in range(58)), picks
    assert Counter(picks) == {"a": 10, "b": 10, "c": 10, "d": 10, "e": 20}
    # Two agents for groups of 4: as spread as it can be, alternating.
    spread.update({"reid": {"hub": {"a": 1.0, "b": 1.0}}}, {"reid": 4})
    picks = [spread.pick("reid", "hub") for _ in range(8)]
    assert all(x != y for x, y in zip(picks, picks[1:])), picks
    assert spread.pick("reid", "cloud") is None
    spread.update({}, {})                                # one agent left at the site: shared again
    assert spread.pick("reid", "hub") is None


def test_the_assignment_lists_a_protected_operators_agents_where_a_site_has_several():
    from jellybean.agents.deployment import direct_targets
    from jellybean.agents.messages import Task

    def task(op, n=1):
        return Task(operator=op, variant="v", runtime="reid-embedder", workers=n)

    spread = {"hub": {"h1": [task("reid")], "h2": [task("reid", 2), task("detect")], "h3": [task("reid.parity")]},
              "edge": {"e1": [task("reid")]}}
    assert direct_targets(spread, {"reid"}) == {"reid": {"hub": {"h1": 1.0, "h2": 2.0}}}
    assert direct_targets(spread, set()) == {}
    assert direct_targets({"hub": {"h1": [task("reid", 3)], "h2": []}}, {"reid"}) == {}


def test_backoff_is_capped_and_jittered():
    b = Backoff(base_s=0.1, cap_s=2.0)
    rng = random.Random(0)
    delays = [b.delay(n, rng) for n in range(12)]
    assert all(0.05 <= d <= 2.0 for d in delays)
    assert max(delays[6:]) <= 2.0 and min(delays[6:]) >= 1.0
    assert len({round(b.delay(5, rng), 6) for _ in range(10)}) > 1


# -- task runner ---------------------------------------------------------------------------------
class _Echo(Operator):
    keyed = "item"

    def __init__(self, config, seen, delay=0.0):
        super().__init__(config)
        self.seen, self.delay = seen, delay

    def process(self, items):
        time.sleep(self.delay)
        self.seen.append([i.frame for i in items])
        return [i.derive("echo", meta={"n": len(items)}) for i in items]


class _Ordered(_Echo):
    keyed = "stream"


def _runner(task: Task, op_cls, seen, **kw):
    out: list[Item] = []
    lock = threading.Lock()

    def emit(name, items, done):
        with lock:
            out.extend(items)
        done()

    delay = kw.pop("delay", 0.0)
    runner = TaskRunner(task, "hub", lambda i: op_cls(OperatorConfig(task.operator, task.variant), seen, delay),
                        emit, AgentTelemetry("a", "hub"), **kw)
    return runner.start(), out


def _wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_duplicates_are_dropped_and_counted():
    seen: list = []
    runner, out = _runner(Task(operator="op", variant="v", runtime="x"), _Echo, seen)
    now = time.time()
    for f in (1, 2, 2, 3, 1):
        runner.offer(Item("s", f, now), 10)
    assert _wait(lambda: len(out) == 3)
    time.sleep(0.1)
    runner.stop()
    assert sorted(i.frame for i in out) == [1, 2, 3]
    snap = runner.telemetry.snapshot(1.0, 0)
    assert snap.operators[0].duplicates == 2 and snap.operators[0].items_in == 5


def test_batches_fill_up_to_the_plan_batch_within_the_window():
    seen: list = []
    task = Task(operator="op", variant="v", runtime="x", batch=4, max_batch_latency_ms=300)
    runner, out = _runner(task, _Echo, seen)
    now = time.time()
    for f in range(1, 9):
        runner.offer(Item("s", f, now), 1)
    assert _wait(lambda: len(out) == 8)
    runner.stop()
    assert max(len(b) for b in seen) == 4 and sum(len(b) for b in seen) == 8


def test_late_items_become_counted_tombstones_not_processed():
    seen: list = []
    runner, out = _runner(Task(operator="op", variant="v", runtime="x"), _Echo, seen, drop_after_ms=500)
    runner.offer(Item("s", 1, time.time() - 10), 1)   # captured 10 s ago
    runner.offer(Item("s", 2, time.time()), 1)
    assert _wait(lambda: len(out) == 2)
    runner.stop()
    by_frame = {i.frame: i for i in out}
    assert by_frame[1].dropped and "late" in by_frame[1].dropped and by_frame[2].dropped is None
    assert [f for b in seen for f in b] == [2]
    assert runner.telemetry.snapshot(1.0, 0).operators[0].dropped == 1


def test_stream_keyed_operators_see_frames_in_order_and_skip_a_lost_frame():
    seen: list = []
    runner, out = _runner(Task(operator="track", variant="v", runtime="x", keyed="stream"), _Ordered, seen,
                          hold_s=0.4)
    now = time.time()
    for f in (3, 1, 2, 5, 6):   # 4 never comes
        runner.offer(Item("s", f, now), 1)
    assert _wait(lambda: len(out) == 5, timeout=5)
    runner.stop()
    order = [f for b in seen for f in b]
    assert order == [1, 2, 3, 5, 6]
    # A frame older than the ones already released is dropped (and passed on as a tombstone).
    seen2: list = []
    runner2, out2 = _runner(Task(operator="track", variant="v", runtime="x", keyed="stream"), _Ordered, seen2,
                            hold_s=0.2)
    runner2.offer(Item("s", 5, now), 1)
    assert _wait(lambda: len(out2) == 1)
    runner2.offer(Item("s", 4, now), 1)
    assert _wait(lambda: len(out2) == 2)
    runner2.stop()
    assert out2[1].frame == 4 and "out of order" in out2[1].dropped


def test_a_failing_operator_drops_its_batch_and_keeps_running():
    class Flaky(_Echo):
        def process(self, items):
            if any(i.frame == 2 for i in items):
                raise ValueError("boom")
            return super().process(items)

    seen: list = []
    runner, out = _runner(Task(operator="op", variant="v", runtime="x"), Flaky, seen)
    now = time.time()
    for f in (1, 2, 3):
        runner.offer(Item("s", f, now), 1)
        time.sleep(0.05)
    assert _wait(lambda: len(out) == 3)
    runner.stop()
    status = {i.frame: i.dropped for i in out}
    assert status[1] is None and status[3] is None and "failed" in status[2]
    assert "boom" in runner.error


def test_a_missing_frame_is_skipped_after_the_hold_even_while_frames_keep_arriving():
    seen: list = []
    runner, out = _runner(Task(operator="track", variant="v", runtime="x", keyed="stream"), _Ordered, seen,
                          hold_s=0.3)
    now = time.time()
    runner.offer(Item("s", 1, now), 1)
    assert _wait(lambda: len(out) == 1)
    started = time.monotonic()
    for f in range(3, 40):          # frame 2 is lost; the others keep coming every 20 ms
        runner.offer(Item("s", f, now), 1)
        time.sleep(0.02)
        if len(out) > 1:
            break
    released_after = time.monotonic() - started
    assert _wait(lambda: len(out) >= 3)
    runner.stop()
    assert released_after < 0.6, f"the line waited {released_after:.2f} s for a lost frame (hold 0.3 s)"
    assert [i.frame for i in out[:3]] == [1, 3, 4]


class _Resetting(_Ordered):
    resets: list = []

    def reset_stream(self, stream):
        self.resets.append(stream)


def test_a_restarted_frame_counter_is_a_new_session_not_out_of_order():
    seen: list = []
    _Resetting.resets = []
    runner, out = _runner(Task(operator="track", variant="v", runtime="x", keyed="stream"), _Resetting, seen,
                          hold_s=0.3)
    now = time.time()
    for f in range(1, 6):
        runner.offer(Item("s", f, now, session="run1"), 1)
    assert _wait(lambda: len(out) == 5)
    for f in range(1, 6):               # the camera rebooted: its counter starts again
        runner.offer(Item("s", f, now, session="run2"), 1)
    assert _wait(lambda: len(out) == 10)
    runner.stop()
    assert all(i.dropped is None for i in out), [i.dropped for i in out if i.dropped]
    assert [(i.session, i.frame) for i in out][5:] == [("run2", f) for f in range(1, 6)]
    assert _Resetting.resets == ["s"]


def test_a_stray_frame_far_ahead_is_rejected_and_changes_nothing():
    seen: list = []
    runner, out = _runner(Task(operator="track", variant="v", runtime="x", keyed="stream"), _Ordered, seen,
                          hold_s=0.2)
    now = time.time()
    for f in range(1, 4):
        runner.offer(Item("s", f, now + f * 0.1), 1)
    assert _wait(lambda: len(out) == 3)
    runner.offer(Item("s", 1_000_000, now + 0.5), 1)     # forged: a million frames ahead
    runner.offer(Item("s", 5, now + 0.5), 1)             # frame 4 is lost: the line waits, then skips
    assert _wait(lambda: len(out) == 4)
    for f in range(6, 10):
        runner.offer(Item("s", f, now + f * 0.1), 1)
    assert _wait(lambda: len(out) == 8)
    runner.stop()
    assert [i.frame for i in out] == [1, 2, 3, 5, 6, 7, 8, 9]
    assert all(i.dropped is None for i in out)
    assert runner.telemetry.snapshot(1.0, 0).rejected == 1


def test_capture_times_far_in_the_future_are_rejected():
    seen: list = []
    runner, out = _runner(Task(operator="op", variant="v", runtime="x"), _Echo, seen)
    acked = []
    runner.offer(Item("s", 1, time.time() + 86400), 1, lambda: acked.append(1))
    runner.offer(Item("s", 2, time.time()), 1, lambda: acked.append(2))
    assert _wait(lambda: len(out) == 1 and len(acked) == 2)
    runner.stop()
    assert [i.frame for i in out] == [2] and sorted(acked) == [1, 2]
    assert runner.telemetry.snapshot(1.0, 0).rejected == 1


def test_items_are_acknowledged_once_their_outputs_are_done_and_duplicates_at_once():
    seen: list = []
    pending = []
    out: list[Item] = []

    def emit(name, items, done):
        out.extend(items)
        pending.append(done)        # the broker has not acknowledged the outputs yet

    runner = TaskRunner(Task(operator="op", variant="v", runtime="x"), "hub",
                        lambda i: _Echo(OperatorConfig("op", "v"), seen, 0.0), emit, AgentTelemetry("a", "hub")).start()
    acked: list[int] = []
    now = time.time()
    runner.offer(Item("s", 1, now), 1, lambda: acked.append(1))
    assert _wait(lambda: len(pending) == 1)
    runner.offer(Item("s", 1, now), 1, lambda: acked.append(-1))   # a redelivered copy
    assert _wait(lambda: acked == [-1])
    pending[0]()
    runner.stop()
    assert acked == [-1, 1]


class _Staged(_Echo):
    """Three stages; `process` is the same chain. Stage 2 fails on frame 2; every stage notes which
    thread ran it."""

    threads: dict[str, set[str]] = {}

    def stages(self):
        return [self._a, self._b, self._c]

    def process(self, items):
        return self._c(self._b(self._a(items)))

    def _note(self, stage):
        _Staged.threads.setdefault(stage, set()).add(threading.current_thread().name)

    def _a(self, items):
        self._note("a")
        time.sleep(self.delay)
        return [i.frame for i in items], items

    def _b(self, state):
        self._note("b")
        frames, items = state
        if 2 in frames:
            raise ValueError("stage b failed")
        return frames, items

    def _c(self, state):
        self._note("c")
        frames, items = state
        self.seen.append(frames)
        return [i.derive("echo", meta={"n": len(items)}) for i in items]


def test_a_pipelined_worker_runs_each_stage_on_its_own_thread_keeps_order_and_drops_only_a_failed_batch():
    _Staged.threads = {}
    seen: list = []
    runner, out = _runner(Task(operator="op", variant="v", runtime="x"), _Staged, seen, delay=0.01)
    now = time.time()
    for f in range(1, 21):
        runner.offer(Item("s", f, now), 1)
    assert _wait(lambda: len(out) == 20)
    runner.stop()
    # One output per input, in the order taken: stages hand batches on first in, first out.
    assert [i.frame for i in out] == list(range(1, 21))
    status = {i.frame: i.dropped for i in out}
    assert "failed" in status[2] and all(status[f] is None for f in status if f != 2)
    assert "stage b failed" in runner.error
    # The last stage never saw the failed batch; the three stages ran on three threads.
    assert 2 not in [f for b in seen for f in b]
    names = [next(iter(_Staged.threads[s])) for s in "abc"]
    assert len(set(names)) == 3 and names[0] == "op-0" and names[2] == "op-0-stage2"
    snap = runner.telemetry.snapshot(1.0, 0)
    assert snap.operators[0].items_out == 20 and snap.operators[0].dropped == 1


def test_stopping_a_pipelined_worker_finishes_what_its_stages_hold():
    seen: list = []
    acks: list[int] = []
    runner, out = _runner(Task(operator="op", variant="v", runtime="x"), _Staged, seen, delay=0.05)
    now = time.time()
    for f in (1, 3, 4, 5, 6):
        runner.offer(Item("s", f, now), 1, lambda f=f: acks.append(f))
    assert _wait(lambda: len(out) >= 1)
    left = runner.stop()
    # Every item is either sent on (and acknowledged) or handed back to be re-homed: none vanish.
    assert sorted([i.frame for i in out] + [i.frame for i, _ in left]) == [1, 3, 4, 5, 6]
    assert sorted(acks) == sorted(i.frame for i in out)


def test_an_operator_that_returns_no_list_drops_its_batch_and_the_worker_goes_on():
    class Broken(_Echo):
        def process(self, items):
            if any(i.frame == 1 for i in items):
                return None
            return super().process(items)

    seen: list = []
    runner, out = _runner(Task(operator="op", variant="v", runtime="x"), Broken, seen)
    now = time.time()
    runner.offer(Item("s", 1, now), 1)
    assert _wait(lambda: len(out) == 1)
    runner.offer(Item("s", 2, now), 1)
    assert _wait(lambda: len(out) == 2)
    runner.stop()
    status = {i.frame: i.dropped for i in out}
    assert "failed" in status[1] and status[2] is None
    assert "returned NoneType for 1 items" in runner.error


def test_items_that_would_miss_their_deadline_are_dropped_at_the_head_not_processed_late():
    seen: list = []
    # A 60 ms operator and a 150 ms end-to-end deadline (Loki's early drop).
    runner, out = _runner(Task(operator="op", variant="v", runtime="x"), _Echo, seen, delay=0.06, deadline_ms=150)
    runner.offer(Item("s", 1, time.time()), 1)                # learns the service time, made in time
    assert _wait(lambda: len(out) == 1) and runner.service_s == pytest.approx(0.06, abs=0.05)
    runner.offer(Item("s", 2, time.time() - 0.12), 1)         # 120 ms old + ~60 ms of service > 150 ms
    runner.offer(Item("s", 3, time.time()), 1)                # fresh: ~60 ms < 150 ms
    assert _wait(lambda: len(out) == 3)
    runner.stop()
    by_frame = {i.frame: i for i in out}
    assert by_frame[2].dropped == "deadline at op" and by_frame[1].dropped is None and by_frame[3].dropped is None
    assert [f for b in seen for f in b] == [1, 3]
    op = runner.telemetry.snapshot(1.0, 0).operators[0]
    assert op.dropped == 1


def test_a_batch_is_filled_with_live_items_the_stale_ones_leave_from_the_head():
    entered, gate = threading.Event(), threading.Event()

    class Gated(_Echo):
        def process(self, items):
            if any(i.frame == 0 for i in items):
                entered.set()
                gate.wait(10)
            return super().process(items)

    seen: list = []
    runner, out = _runner(Task(operator="op", variant="v", runtime="x", batch=4, max_batch_latency_ms=50),
                          Gated, seen, deadline_ms=2000)
    runner.offer(Item("s", 0, time.time()), 1)              # holds the worker while the queue fills
    assert entered.wait(5)
    for f in range(1, 11):                                  # stale (3 s old) and fresh, interleaved
        runner.offer(Item("s", f, time.time() - (3.0 if f % 5 in (1, 2, 3) else 0.0)), 1)
    gate.set()
    assert _wait(lambda: len(out) == 11)
    runner.stop()
    stale = [f for f in range(1, 11) if f % 5 in (1, 2, 3)]
    assert sorted(i.frame for i in out if i.dropped == "deadline at op") == stale
    # The four fresh items run as one full batch, not spread over batches padded with stale ones.
    assert seen == [[0], [4, 5, 9, 10]]
    assert runner.telemetry.snapshot(1.0, 0).operators[0].dropped == len(stale)


def test_without_a_deadline_an_old_item_under_the_late_limit_is_processed():
    seen: list = []
    runner, out = _runner(Task(operator="op", variant="v", runtime="x"), _Echo, seen, delay=0.06)
    runner.offer(Item("s", 1, time.time() - 1.0), 1)
    assert _wait(lambda: len(out) == 1)
    runner.stop()
    assert out[0].dropped is None and seen == [[1]]


def test_an_assignment_deadline_must_be_a_positive_finite_number():
    from jellybean.agents.messages import Assignment

    base = dict(agent="a", site="s", version=1, plan="p", workflow="w")
    assert Assignment(**base, deadline_ms=250).deadline_ms == 250 and Assignment(**base).deadline_ms is None
    for bad in (0, -5, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            Assignment(**base, deadline_ms=bad)
