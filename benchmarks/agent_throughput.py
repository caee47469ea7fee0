"""An agent serving the shipped detector through the broker, against a plain loop on the same model.

Measured in one run on this machine, in alternating rounds so that the machine's load hits every
row alike; figures are medians over rounds, ratios are taken between medians of the same run.

- Frames: a synthetic scene (`write_scene`, 2 cameras x 10 s, 640x360 by default) read back and
  JPEG-encoded at quality 90, as the replay driver publishes them (the example's frames).
- Baseline "Detector.process": the agent's own detector operator ("yolov8-detector": JPEG decode,
  resize, ONNX Runtime, NMS, crops as JPEGs) called directly in a loop, batch B, no MQTT.
- Row "bare ORT + preprocessing" (the aim's baseline): per batch of B frames, `cv2.imdecode` of the
  same JPEGs, the detector's preprocessing (`preprocess` to the model's input size, its letterbox
  setting) and `InferenceSession.run`: the work a frame cannot avoid, without NMS and crops.
- Row "bare ORT run": `InferenceSession.run` alone on tensors preprocessed beforehand, batch B:
  what the model costs without decode, preprocessing, NMS and crops.
- Row "agent": a real broker (Mosquitto; `--embedded`: the embedded amqtt broker), an agent process
  (`python -m jellybean agent`, or `--in-process`) given a retained Assignment with one detector
  task per batch size, frames published to its data topic with at most `--window` x B in flight
  (service rate, not queueing), outputs collected on the sink topic. Every frame must come back
  exactly once, as a detection (not a tombstone); the table says so.
- "One frame in flight": frames sent one at a time (batch 1): the round trip through broker and
  agent, against one Detector.process call.
- Broker throughput: one publisher and one subscriber moving the example's frame items through
  the broker at QoS 1 as fast as a bounded window lets them (Mosquitto and the embedded broker).
- Levers, measured in the same rounds: `--threads 1,2` runs every row at each intra-op thread
  count (one agent process per count, both on the one broker); `--batch 1,4,8` the batch sizes;
  and every round times JPEG decode + preprocessing per frame with `cv2.IMREAD_COLOR` against
  `cv2.IMREAD_REDUCED_COLOR_2` (libjpeg's DCT scaling: half the width and height).

The aim: agent / (bare ORT + preprocessing) >= 0.8.

    python benchmarks/agent_throughput.py [--batch 1,4] [--rounds 3] [--threads 1[,2]] [--embedded]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from rich.console import Console
from rich.table import Table

from jellybean.agents import topics
from jellybean.agents.broker import MosquittoBroker, find_mosquitto, free_port, parse_broker_url
from jellybean.agents.items import Item, decode_item, encode_item
from jellybean.agents.messages import Assignment, Heartbeat, Task, parse_message
from jellybean.agents.operators.base import OperatorConfig, create
from jellybean.agents.processes import stop_process
from jellybean.replay.driver import JPEG_QUALITY
from jellybean.replay.scene import SceneConfig, write_scene
from jellybean.zoo.yolo import preprocess

REPO = Path(__file__).resolve().parents[1]
AGENT = "bench"  # agent names: bench-t<threads>
AIM = 0.80  # agent / (bare ORT + preprocessing)
console = Console(width=None if sys.stdout.isatty() else 160)


def show(table: Table) -> None:
    """Print a table at its full width, even past the console's: rich then never folds or cuts a
    cell (a narrow terminal wraps the lines instead; piped output stays whole)."""
    need = console.measure(table, options=console.options.update_width(10_000)).maximum
    width = console.width
    console.width = max(width, need)
    try:
        console.print(table)
    finally:
        console.width = width


# -- frames --------------------------------------------------------------------------------------

def example_frames(tmp: Path, cameras: int, seconds: float, width: int, height: int) -> list[bytes]:
    """The scene's frames as the replay driver publishes them: JPEG, quality 90."""
    write_scene(tmp / "scene", SceneConfig(cameras=cameras, seconds=seconds, width=width, height=height, seed=3))
    jpegs = []
    for video in sorted((tmp / "scene").rglob("vdo.avi")):
        cap = cv2.VideoCapture(str(video))
        while True:
            ok, image = cap.read()
            if not ok:
                break
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            jpegs.append(buf.tobytes())
        cap.release()
    if not jpegs:
        raise SystemExit("the synthetic scene produced no readable frames")
    return jpegs


def frame_items(jpegs: list[bytes], stream: str, n: int) -> list[Item]:
    now = time.time()
    return [Item(stream=stream, frame=k + 1, capture_ts=now, kind="frame", blobs=[jpegs[k % len(jpegs)]])
            for k in range(n)]


# -- baselines -----------------------------------------------------------------------------------

def detector(model: Path, batch: int, threads: int):
    return create("yolov8-detector", OperatorConfig(operator="detect", variant=model.stem, model=model,
                                                    threads=threads, batch=batch))


def time_process(op, items: list[Item], batch: int) -> float:
    """Frames/s of Detector.process over `items` in batches of `batch`."""
    t0 = time.perf_counter()
    done = 0
    for i in range(0, len(items), batch):
        done += len(op.process(items[i:i + batch]))
    return done / (time.perf_counter() - t0)


def ort_session(model: Path, threads: int):
    """A session with the options the agent's OrtBackend uses (CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


def time_bare_ort(session, tensors: list[np.ndarray], n: int) -> float:
    """Frames/s of session.run alone, `n` frames in the pre-made batches."""
    name = session.get_inputs()[0].name
    t0 = time.perf_counter()
    done = k = 0
    while done < n:
        batch = tensors[k % len(tensors)]
        session.run(None, {name: batch})
        done += len(batch)
        k += 1
    return done / (time.perf_counter() - t0)


def decode_all(jpegs: list[bytes], flag: int = cv2.IMREAD_COLOR) -> list[np.ndarray]:
    return [cv2.imdecode(np.frombuffer(j, np.uint8), flag) for j in jpegs]


def time_bare_pre(session, jpegs: list[bytes], size, letterbox: bool, batch: int, n: int,
                  flag: int = cv2.IMREAD_COLOR) -> float:
    """Frames/s of JPEG decode + the detector's preprocessing + session.run, `n` frames in batches
    of `batch`: what every frame costs before NMS and crops."""
    name = session.get_inputs()[0].name
    t0 = time.perf_counter()
    done = k = 0
    while done < n:
        part = [jpegs[(k + i) % len(jpegs)] for i in range(batch)]
        images = decode_all(part, flag)
        session.run(None, {name: preprocess(images, size, letterbox=letterbox).images})
        done += batch
        k += batch
    return done / (time.perf_counter() - t0)


def decode_costs(jpegs: list[bytes], size, letterbox: bool, flag: int) -> tuple[float, float]:
    """(decode, preprocess) ms per frame over `jpegs`, one frame at a time, with imdecode flag `flag`."""
    t_dec = t_pre = 0.0
    for j in jpegs:
        t0 = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(j, np.uint8), flag)
        t1 = time.perf_counter()
        preprocess([image], size, letterbox=letterbox)
        t_dec += t1 - t0
        t_pre += time.perf_counter() - t1
    return 1000 * t_dec / len(jpegs), 1000 * t_pre / len(jpegs)


# -- brokers -------------------------------------------------------------------------------------

class EmbeddedProcess:
    """The embedded amqtt broker in its own process (`jellybean broker run --embedded`), so that it
    does not share this process's GIL with the clients being measured."""

    kind = "embedded"

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "jellybean", "broker", "run", "--embedded",
                                      "--port", str(self.port)], stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the embedded broker exited ({self.proc.returncode}); see {log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.25):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the embedded broker did not listen within 30 s; see {log_path}")
                time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


class Client:
    """The benchmark's own MQTT client: plain paho driven by `loop_start()`, independent of the
    transport under test (jellybean's MqttLink), whose publishes it measures."""

    def __init__(self, url: str, client_id: str) -> None:
        address = parse_broker_url(url)
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=True, protocol=mqtt.MQTTv311)
        self._client.max_inflight_messages_set(200)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._subs: dict[str, tuple[int, object]] = {}
        self._connected = threading.Event()
        self._address = address

    def subscribe(self, topic: str, handler, qos: int = 1) -> None:
        self._subs[topic] = (qos, handler)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if self._subs:
            client.subscribe([(t, q) for t, (q, _) in self._subs.items()])
        self._connected.set()

    def _on_message(self, client, userdata, message) -> None:
        for f, (_, handler) in self._subs.items():
            if mqtt.topic_matches_sub(f, message.topic):
                try:
                    handler(message.topic, message.payload)
                except Exception as exc:  # noqa: BLE001 - keep paho's thread alive
                    console.print(f"[red]dropped a message on {message.topic}: {exc}[/]")

    def start(self) -> "Client":
        self._client.connect(self._address.host, self._address.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(15):
            raise SystemExit(f"could not connect to {self._address.url}")
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def broker_rate(url: str, payloads: list[bytes], seconds: float, window: int, tag: str) -> tuple[float, float, bool]:
    """(frames/s, MB/s, stalled) from one publisher to one subscriber at QoS 1, at most `window` in
    flight. `stalled`: nothing came back for 10 s (a lost QoS 1 message); the rate is then up to
    the last message received."""
    topic = f"{topics.ROOT}/data/brokerbench/{tag}"
    credit = threading.Semaphore(window)
    got = [0, 0, 0.0]  # messages, bytes, when the last arrived
    lock = threading.Lock()
    ready = threading.Event()

    def on_message(_topic: str, payload: bytes) -> None:
        if payload == b"probe":
            ready.set()
            return
        with lock:
            got[0] += 1
            got[1] += len(payload)
            got[2] = time.monotonic()
        credit.release()

    sub = Client(url, f"jb-bench-sub-{tag}")
    sub.subscribe(topic, on_message, qos=1)
    sub.start()
    pub = Client(url, f"jb-bench-pub-{tag}").start()
    try:
        # The subscription is in place once a probe comes back (a fixed sleep loses the first messages).
        deadline = time.monotonic() + 15
        while not ready.wait(0.2):
            if time.monotonic() > deadline:
                raise SystemExit(f"broker {url}: the subscriber received nothing for 15 s")
            pub.publish(topic, b"probe", qos=1)
        warm_until = time.monotonic() + min(0.5, seconds / 4)
        end = None
        k = 0
        start_counts = (0, 0)
        stalled = False
        t0 = time.monotonic()
        while True:
            now = time.monotonic()
            if end is None and now >= warm_until:
                with lock:
                    start_counts = (got[0], got[1])
                t0, end = now, now + seconds
            if end is not None and now >= end:
                break
            if not credit.acquire(timeout=10):
                console.print(f"[red]broker {url}: no message came back for 10 s; measurement cut short[/]")
                stalled = True
                break
            pub.publish(topic, payloads[k % len(payloads)], qos=1)
            k += 1
        with lock:
            n, b = got[0] - start_counts[0], got[1] - start_counts[1]
            dt = (got[2] if stalled else time.monotonic()) - t0
        return (n / dt, b / dt / 1e6, stalled) if dt > 0 else (0.0, 0.0, stalled)
    finally:
        pub.stop()
        sub.stop()


# -- the agent -----------------------------------------------------------------------------------

class AgentUnderTest:
    """An agent (process or in-process) given one detector task per batch size, driven through the broker."""

    def __init__(self, name: str, url: str, model: Path, batches: list[int], threads: int, latency_ms: float,
                 workdir: Path, in_process: bool) -> None:
        self.name = name
        self.url = url
        self.ops = {b: f"detect-b{b}" for b in batches}
        self.batches = batches
        self.proc: subprocess.Popen | None = None
        self.agent = None
        if in_process:
            from jellybean.agents.agent import Agent, AgentOptions
            self.agent = Agent(AgentOptions(name=name, hardware="bench", broker=url, model_dirs=(model.parent,),
                                            cache_dir=workdir / "cache", threads=threads)).start()
        else:
            self._log = open(workdir / f"{name}.log", "w")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jellybean", "agent", "--name", name, "--hardware", "bench", "--broker", url,
                 "--models", str(model.parent), "--threads", str(threads), "--cache", str(workdir / "cache"),
                 "--log-level", "warning"],
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.log_path = workdir / f"{name}.log"
        self.link = Client(url, f"jb-bench-driver-{name}")
        self._beat: Heartbeat | None = None
        self._beat_cond = threading.Condition()
        self._out_lock = threading.Lock()
        self._expect: dict[tuple[str, int], int] = {}
        self._credit = threading.Semaphore(0)
        self._done = threading.Event()
        self.received = 0
        self.duplicates = 0
        self.tombstones = 0
        self.foreign = 0
        self.last_out = 0.0
        self.link.subscribe(topics.heartbeat(name), self._on_heartbeat, qos=0)
        self.link.subscribe(topics.sink(name), self._on_sink, qos=1)
        self.link.start()
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
        tasks = [Task(operator=self.ops[b], variant=model.stem, runtime="yolov8-detector", batch=b,
                      max_batch_latency_ms=latency_ms, workers=1, model=model.name, sha256=sha,
                      size=model.stat().st_size) for b in batches]
        ops = [self.ops[b] for b in batches]
        assignment = Assignment(agent=name, site=name, version=1, plan="bench", workflow=name, tasks=tasks,
                                placements={op: {name: 1.0} for op in ops}, downstream={op: [] for op in ops},
                                sinks=ops, sink_topic=topics.sink(name), drop_after_ms=1e9)
        self.link.publish(topics.assignment(name), assignment.to_bytes(), retain=True)
        self._wait_running(1, set(ops), timeout=90)

    def _on_heartbeat(self, topic: str, payload: bytes) -> None:
        beat = parse_message(payload, topic, Heartbeat)
        with self._beat_cond:
            self._beat = beat
            self._beat_cond.notify_all()

    def _wait_running(self, version: int, ops: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._beat_cond:
            while True:
                b = self._beat
                if b is not None and b.errors:
                    raise SystemExit(f"the agent could not start its tasks: {'; '.join(b.errors)}")
                if b is not None and b.assignment_version == version and ops <= set(b.running):
                    return
                if self.proc is not None and self.proc.poll() is not None:
                    raise SystemExit(f"the agent exited ({self.proc.returncode}); see {self.log_path}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"the agent did not report assignment version {version} running {sorted(ops)} "
                                     f"within {timeout:.0f} s; see {self.log_path}")
                self._beat_cond.wait(min(left, 0.5))

    def _on_sink(self, topic: str, payload: bytes) -> None:
        item = decode_item(payload, topic)
        with self._out_lock:
            left = self._expect.get(item.key)
            if left is None:
                self.foreign += 1           # an earlier run's straggler
                return
            if left == 0:
                self.duplicates += 1
                return
            self._expect[item.key] = 0
            self.received += 1
            if item.dropped is not None or item.kind != "detections":
                self.tombstones += 1
            self.last_out = time.perf_counter()
            if self.received == len(self._expect):
                self._done.set()
        self._credit.release()

    def run(self, batch: int, items: list[Item], window: int, timeout: float) -> dict:
        """Publish `items` to the batch-`batch` task with at most `window` in flight; frames/s out."""
        payloads = [encode_item(i) for i in items]
        topic = topics.data(self.name, self.ops[batch])
        with self._out_lock:
            self._expect = {i.key: 1 for i in items}
            self.received = self.duplicates = self.tombstones = 0
            self._done.clear()
        self._credit = threading.Semaphore(window)
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        for p in payloads:
            while not self._credit.acquire(timeout=1.0):
                if time.monotonic() > deadline:
                    break
            if time.monotonic() > deadline:
                break
            self.link.publish(topic, p, qos=1)
        self._done.wait(max(0.0, deadline - time.monotonic()))
        time.sleep(0.05)  # let a duplicate, if any, arrive before counting
        with self._out_lock:
            received, dup, tomb = self.received, self.duplicates, self.tombstones
            elapsed = (self.last_out - t0) if received else float("nan")
        return {"rate": received / elapsed if received else 0.0, "sent": len(items), "received": received,
                "missing": len(items) - received, "duplicates": dup, "tombstones": tomb}

    def reconnects(self) -> int | None:
        """How often the agent process logged a lost broker connection (None: in-process)."""
        if self.proc is None or not self.log_path.exists():
            return None
        return self.log_path.read_text(errors="replace").count("lost the broker connection")

    def stop(self) -> None:
        self.link.publish(topics.assignment(self.name), b"", retain=True)  # clear the retained assignment
        time.sleep(0.1)
        self.link.stop()
        if self.agent is not None:
            self.agent.stop()
        if self.proc is not None:
            stop_process(self.proc)
            self._log.close()


# -- main ----------------------------------------------------------------------------------------

def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def ratio(a: list[float], b: list[float]) -> float:
    """The ratio of two rows' medians (of the same run)."""
    return statistics.median(a) / statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "model_zoo/aicity/detector_w100.onnx")
    parser.add_argument("--batch", default="1,4", help="batch sizes, comma-separated")
    parser.add_argument("--threads", default="1",
                        help="ONNX Runtime intra-op threads (baselines and agent), comma-separated: "
                             "one agent per count")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=400, help="frames per measurement (per row, batch and round)")
    parser.add_argument("--window", type=int, default=4, help="frames in flight to the agent, in batches")
    parser.add_argument("--single-frames", type=int, default=20,
                        help="frames sent one at a time (batch 1) per round, for the round trip")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the task's max_batch_latency_ms")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="scene length")
    parser.add_argument("--size", default="640x360", help="frame size WxH")
    parser.add_argument("--embedded", action="store_true", help="run the agent through the embedded amqtt broker")
    parser.add_argument("--in-process", action="store_true", help="run the agent in this process (for profiling)")
    parser.add_argument("--broker-seconds", type=float, default=2.0, help="timed seconds per broker and round")
    parser.add_argument("--broker-window", type=int, default=64, help="messages in flight in the broker test")
    parser.add_argument("--no-embedded-rate", action="store_true", help="skip the embedded broker's throughput")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(threadName)s %(name)s: %(message)s")
    batches = [int(b) for b in args.batch.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    if args.in_process and len(threads) > 1:
        raise SystemExit("--in-process runs one agent: give one --threads count")
    width, height = (int(v) for v in args.size.lower().split("x"))
    if find_mosquitto() is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    keys = [(t, b) for t in threads for b in batches]

    with tempfile.TemporaryDirectory(prefix="jb-agent-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with console.status("writing the synthetic scene"):
            jpegs = example_frames(tmp, args.cameras, args.seconds, width, height)
        sizes = [len(j) for j in jpegs]
        item_size = statistics.mean(len(p) for p in (encode_item(i) for i in frame_items(jpegs, "S01/c001", 20)))
        console.print(f"frames: {len(jpegs)} JPEGs (q{JPEG_QUALITY}) of {width}x{height}, mean {statistics.mean(sizes) / 1e3:.1f} KB "
                      f"(min {min(sizes) / 1e3:.1f}, max {max(sizes) / 1e3:.1f}); a frame item on the wire "
                      f"≈ {item_size / 1e3:.1f} KB")
        console.print(f"model {args.model.name}, ORT threads {args.threads}, {args.frames} frames per measurement, "
                      f"{args.rounds} rounds, agent window {args.window}×batch, max_batch_latency {args.latency_ms:g} ms, "
                      f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")

        # Baselines: the operator itself, decode + preprocessing + a bare session, and a bare session
        # on preprocessed tensors; each with its own session per thread count.
        ops = {(t, b): detector(args.model, b, t) for t, b in keys}
        sessions = {t: ort_session(args.model, t) for t in threads}
        op0 = ops[keys[0]]
        size, letterbox = op0.size, op0.letterbox
        decoded = decode_all(jpegs[:32])
        tensors = {b: [preprocess(decoded[i:i + b], size, letterbox=letterbox).images for i in range(0, 32 - b + 1, b)]
                   for b in batches}
        console.print(f"model input {size[1]}x{size[0]} (WxH), letterbox {letterbox}")
        for t, b in keys:  # warm-up
            time_process(ops[t, b], frame_items(jpegs, "warm", 4 * b), b)
            time_bare_ort(sessions[t], tensors[b], 4 * b)
            time_bare_pre(sessions[t], jpegs, size, letterbox, b, 4 * b)

        mosquitto = MosquittoBroker(None, workdir=tmp / "mosquitto")
        mosquitto.start()
        mosquitto.wait_ready()
        embedded = None
        if args.embedded or not args.no_embedded_rate:
            embedded = EmbeddedProcess(tmp / "embedded.log")
        agent_broker = embedded.url if args.embedded else mosquitto.url
        agents: dict[int, AgentUnderTest] = {}
        try:
            for t in threads:
                with console.status(f"starting the agent with {t} ORT thread(s)"):
                    agents[t] = AgentUnderTest(f"{AGENT}-t{t}", agent_broker, args.model, batches, t, args.latency_ms,
                                               tmp, args.in_process)
            for t, b in keys:  # warm-up through the agent
                w = agents[t].run(b, frame_items(jpegs, f"warm/b{b}", 4 * args.window * b), args.window * b, 60)
                if w["missing"]:
                    raise SystemExit(f"warm-up at {t} thread(s), batch {b}: {w['missing']} frames did not come "
                                     f"back; see {agents[t].log_path}")

            process = {k: [] for k in keys}
            bare = {k: [] for k in keys}
            bare_pre = {k: [] for k in keys}
            through = {k: [] for k in keys}
            checks = {k: [] for k in keys}
            decode_ms = {"IMREAD_COLOR": [], "IMREAD_REDUCED_COLOR_2": []}  # (decode, preprocess) per round
            single = []  # ms per frame with one frame in flight (batch 1): the round trip
            brokers = {"mosquitto": [], **({"embedded": []} if embedded else {})}
            for r in range(args.rounds):
                for t, b in keys:
                    k = (t, b)
                    with console.status(f"round {r + 1}/{args.rounds}, {t} thread(s), batch {b}"):
                        process[k].append(time_process(ops[k], frame_items(jpegs, f"base/r{r}", args.frames), b))
                        bare_pre[k].append(time_bare_pre(sessions[t], jpegs, size, letterbox, b, args.frames))
                        bare[k].append(time_bare_ort(sessions[t], tensors[b], args.frames))
                        res = agents[t].run(b, frame_items(jpegs, f"agent/r{r}/b{b}", args.frames), args.window * b,
                                            timeout=60 + args.frames / 5)
                    through[k].append(res["rate"])
                    checks[k].append(res)
                    console.print(f"round {r + 1}, {t} thread(s), batch {b}: Detector.process {process[k][-1]:.1f} "
                                  f"f/s, bare ORT + preprocessing {bare_pre[k][-1]:.1f} f/s, bare ORT run "
                                  f"{bare[k][-1]:.1f} f/s, agent {res['rate']:.1f} f/s "
                                  f"({res['received']}/{res['sent']} back, {res['duplicates']} duplicates, "
                                  f"{res['tombstones']} tombstones)")
                with console.status(f"round {r + 1}/{args.rounds}, decode at full and half size"):
                    for flag_name in decode_ms:
                        decode_ms[flag_name].append(decode_costs(jpegs, size, letterbox, getattr(cv2, flag_name)))
                console.print(f"round {r + 1}: decode + preprocess per frame: " + ", ".join(
                    f"{n} {sum(v[-1]):.2f} ms" for n, v in decode_ms.items()))
                if 1 in batches:
                    with console.status(f"round {r + 1}/{args.rounds}, one frame in flight"):
                        res = agents[threads[0]].run(1, frame_items(jpegs, f"single/r{r}", args.single_frames), 1,
                                                     timeout=60)
                    single.append(1000.0 / res["rate"] if res["rate"] else float("nan"))
                    console.print(f"round {r + 1}: one frame in flight: {single[-1]:.1f} ms per frame "
                                  f"({res['received']}/{res['sent']} back)")
                payloads = [encode_item(i) for i in frame_items(jpegs, "brokerbench", len(jpegs))]
                with console.status(f"round {r + 1}/{args.rounds}, broker throughput"):
                    for name, url in (("mosquitto", mosquitto.url), *((("embedded", embedded.url),) if embedded else ())):
                        brokers[name].append(broker_rate(url, payloads, args.broker_seconds, args.broker_window,
                                                         f"{name}{r}"))
                        console.print(f"round {r + 1} broker {name}: {brokers[name][-1][0]:.0f} frames/s, "
                                      f"{brokers[name][-1][1]:.1f} MB/s")
            reconnects = {t: a.reconnects() for t, a in agents.items()}
        finally:
            for a in agents.values():
                a.stop()
            mosquitto.stop()
            if embedded is not None:
                embedded.stop()

    broker_name = "embedded amqtt" if args.embedded else "Mosquitto"
    table = Table(title=f"{args.model.name}: frames/s, medians (min–max) over {args.rounds} rounds; ratios between "
                        f"medians", title_justify="left")
    for col in ("threads", "batch", "bare ORT run", "bare ORT + preproc", "Detector.process",
                f"agent via {broker_name}",
                "agent / (ORT + preproc)", "aim", "agent / ORT run", "agent / process", "frames back"):
        table.add_column(col, justify="right", no_wrap=True)
    for k in keys:
        t, b = k
        aim = ratio(through[k], bare_pre[k])
        ok = all(c["missing"] == 0 and c["duplicates"] == 0 and c["tombstones"] == 0 for c in checks[k])
        sent = sum(c["sent"] for c in checks[k])
        back = sum(c["received"] - c["tombstones"] for c in checks[k])
        table.add_row(str(t), str(b), spread(bare[k]), spread(bare_pre[k]), spread(process[k]), spread(through[k]),
                      f"{aim:.2f}", f"≥ {AIM:.2f} {'met' if aim >= AIM else '[bold red]below[/]'}",
                      f"{ratio(through[k], bare[k]):.2f}", f"{ratio(through[k], process[k]):.2f}",
                      f"{back}/{sent}" + (" exactly once" if ok else
                                          f" [red]{sum(c['duplicates'] for c in checks[k])} dup, "
                                          f"{sum(c['missing'] for c in checks[k])} missing, "
                                          f"{sum(c['tombstones'] for c in checks[k])} tombstones[/]"))
    show(table)

    # Levers: threads (same batch, against the first thread count), batch (against the first batch size).
    if len(threads) > 1 or len(batches) > 1:
        lt = Table(title="levers: each row's median frames/s against the first thread count (same batch) and the "
                         "first batch size (same threads)", title_justify="left")
        for col in ("threads", "batch", "agent", "× vs threads", "× vs batch", "bare ORT + preproc", "× vs threads",
                    "× vs batch", "bare ORT run", "× vs threads", "× vs batch"):
            lt.add_column(col, justify="right", no_wrap=True)
        for t, b in keys:
            row = [str(t), str(b)]
            for rows in (through, bare_pre, bare):
                row += [f"{statistics.median(rows[t, b]):.0f}", f"{ratio(rows[t, b], rows[threads[0], b]):.2f}",
                        f"{ratio(rows[t, b], rows[t, batches[0]]):.2f}"]
            lt.add_row(*row)
        show(lt)
    dt = Table(title=f"decode + preprocessing to {size[1]}x{size[0]}, ms per frame (one at a time), "
                     f"medians (min–max) over {args.rounds} rounds of {len(jpegs)} frames", title_justify="left")
    for col in ("imdecode flag", "decoded size", "decode", "preprocess", "decode + preprocess"):
        dt.add_column(col, justify="right" if col != "imdecode flag" else "left", no_wrap=True)
    for name, values in decode_ms.items():
        shape = cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), getattr(cv2, name)).shape
        dt.add_row(name, f"{shape[1]}x{shape[0]}", spread([v[0] for v in values], "{:.3f}"),
                   spread([v[1] for v in values], "{:.3f}"), spread([sum(v) for v in values], "{:.3f}"))
    show(dt)
    full = statistics.median(sum(v) for v in decode_ms["IMREAD_COLOR"])
    half = statistics.median(sum(v) for v in decode_ms["IMREAD_REDUCED_COLOR_2"])
    console.print(f"IMREAD_REDUCED_COLOR_2 saves {full - half:.3f} ms per frame ({100 * (full - half) / full:.0f} % of "
                  f"decode + preprocess); crops would then come from the {width // 2}x{height // 2} image")
    for k in keys:
        ms = 1000 / statistics.median(through[k])
        console.print(f"{k[0]} thread(s), batch {k[1]}: the agent spends {ms:.2f} ms per frame; less {full - half:.3f} "
                      f"ms it would run at ≈ {1000 / (ms - (full - half)):.0f} f/s, "
                      f"{1000 / (ms - (full - half)) / statistics.median(bare_pre[k]):.2f} of today's bare ORT + "
                      f"preprocessing")
    if single:
        console.print(f"one frame in flight (batch 1, {threads[0]} thread(s)): {spread(single, '{:.1f}')} ms per frame "
                      f"through the agent and the broker, against "
                      f"{1000 / statistics.median(process[threads[0], 1]):.1f} ms in Detector.process")
    bt = Table(title=f"broker throughput, QoS 1, one publisher → one subscriber, {args.broker_window} in flight, "
                     f"frame items of {item_size / 1e3:.1f} KB", title_justify="left")
    for col in ("broker", "frames/s", "MB/s", "lost QoS 1 messages"):
        bt.add_column(col, justify="right" if col != "broker" else "left", no_wrap=True)
    for name, values in brokers.items():
        stalls = sum(v[2] for v in values)
        bt.add_row(name, spread([v[0] for v in values]), spread([v[1] for v in values], "{:.1f}"),
                   f"[red]{stalls} of {len(values)} rounds stalled[/]" if stalls else "none")
    show(bt)
    for k in keys:
        aim = ratio(through[k], bare_pre[k])
        paired = statistics.median(a / p for a, p in zip(through[k], bare_pre[k]))
        console.print(f"{k[0]} thread(s), batch {k[1]}: agent / (bare ORT + preprocessing) = {aim:.2f} "
                      f"({'meets' if aim >= AIM else 'below'} the aim of {AIM:.2f}; median of per-round ratios "
                      f"{paired:.2f}); agent / bare ORT run = {ratio(through[k], bare[k]):.2f}; agent / "
                      f"Detector.process = {ratio(through[k], process[k]):.2f}; Detector.process / (bare ORT + "
                      f"preprocessing) = {ratio(process[k], bare_pre[k]):.2f}")
    for t, n in reconnects.items():
        if n is not None:
            console.print(f"the agent process with {t} thread(s) lost its broker connection {n} time(s) during the run"
                          + (" (see benchmarks/README.md: paho writes from two threads)" if n else ""))


if __name__ == "__main__":
    main()
