"""Replay: publish every camera's frames at its recorded rate and offset, collect what comes out.

Two ways to run the same operators:
- `--broker URL`: into a running deployment (`jellybean deploy` / `jellybean up`): frames go to
  the data topics the controller's retained routes name, the sink topic is collected;
- `--local`: an in-process pipeline built from the plan's variants, no broker, no agents.
"""

from __future__ import annotations

import heapq
import logging
import secrets
import threading
import time
import weakref
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import cv2
import numpy as np

from jellybean.agents import topics
from jellybean.agents.items import Item, MessageError, decode_item, encode_item
from jellybean.agents.messages import Metrics, Routes, parse_message
from jellybean.agents.routing import Router
from jellybean.errors import JellyBeanError, SpecError
from jellybean.replay.cityflow import Camera, Scenario
from jellybean.replay.sink import SinkCollector

if TYPE_CHECKING:
    from jellybean.replay.trace import LoadTrace

log = logging.getLogger(__name__)
JPEG_QUALITY = 90
QUIET_S = 6.0


@dataclass
class RunData:
    """Raw measurements of one replay, before they become a report."""

    mode: str
    speed: float
    started_at: float
    seconds: float = 0.0
    media_seconds: float = 0.0   # recorded time covered (KB/s figures are per second of video)
    published: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    link_bytes: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    timeline: list[tuple[float, int]] = field(default_factory=list)   # (t since start, items at sink)
    problems: list[str] = field(default_factory=list)
    sink: SinkCollector = field(default_factory=SinkCollector)
    camera_sites: dict[str, str] = field(default_factory=dict)
    plan_doc: dict | None = None    # the plan the deployment ran (from its routes), for the report
    agent_metrics: dict[str, Metrics] = field(default_factory=dict)
    session: str = ""               # every item of this run carries it; the agents count bytes by it
    foreign: int = 0                # sink items of other sessions (earlier runs), ignored
    clock_start: float = 0.0        # time.time() when the first frame was due (0: unknown)
    # Every routes message seen: (time.time(), version, plan name, plan $/h, its predicted accuracy);
    # a new version is a re-plan.
    routes_log: list[tuple[float, int, str, float | None, float | None]] = field(default_factory=list)
    metrics_at_start: dict[str, Metrics] = field(default_factory=dict)   # each agent's last before the clock
    # `up --isolate`: bytes each way on each link's wire (jellybean.sites.brokers.WireBytes), clock start to end.
    wire: list = field(default_factory=list)
    wire_samples: list = field(default_factory=list)   # jellybean.sites.brokers.LinkSample, every 0.5 s
    offered: list[tuple[float, int]] = field(default_factory=list)   # (t since start, frames published)
    held_back: int = 0              # frames a `cameras` trace kept off
    trace: str | None = None        # the load trace's file, when one shaped the replay


def new_session() -> str:
    """A replay's session: new frame numbers, not duplicates of an earlier run's (sortable by time)."""
    return f"r{time.time_ns() // 1_000_000:x}-{secrets.token_hex(3)}"


def _frames(camera: Camera, problems: list[str], limit_s: float | None) -> Iterator[tuple[float, int, np.ndarray]]:
    """(seconds on the scenario clock, frame, image); a frame that stops decoding ends the camera
    early and is reported."""
    last = 0
    try:
        for frame, image in camera.frames():
            t = camera.timestamp(frame)
            if limit_s is not None and t - camera.offset_s > limit_s:
                return
            last = frame
            yield t, frame, image
    except JellyBeanError as exc:
        problems.append(f"{camera.key}: {exc}")
        return
    if camera.frame_count and last < camera.frame_count and limit_s is None:
        problems.append(f"{camera.video_path}: only frames 1-{last} of {camera.frame_count} could be decoded; "
                        "the rest of this camera is missing from the replay")


def schedule(cameras: list[Camera], problems: list[str], limit_s: float | None = None
             ) -> Iterator[tuple[float, Camera, int, np.ndarray]]:
    """Frames of all cameras merged in capture order (seconds relative to the earliest camera)."""
    start = min((c.offset_s for c in cameras), default=0.0)
    heap: list = []
    gens = {}
    for i, cam in enumerate(cameras):
        gens[i] = _frames(cam, problems, limit_s)
        nxt = next(gens[i], None)
        if nxt is not None:
            heapq.heappush(heap, (nxt[0] - start, i, nxt[1], nxt[2]))
    while heap:
        t, i, frame, image = heapq.heappop(heap)
        yield t, cameras[i], frame, image
        nxt = next(gens[i], None)
        if nxt is not None:
            heapq.heappush(heap, (nxt[0] - start, i, nxt[1], nxt[2]))


def playable_cameras(scenario: Scenario, problems: list[str]) -> list[Camera]:
    cams = []
    for cam in scenario.cameras:
        if cam.playable:
            cams.append(cam)
        else:
            problems.append(f"{cam.key}: skipped: {cam.problem}")
    if not cams:
        raise JellyBeanError(f"scenario {scenario.name}: no camera can be replayed:\n" + "\n".join(problems))
    return cams


# Each camera's calibration as frame meta (or None without a usable calibration.txt), read once.
_CALIBRATIONS: "weakref.WeakKeyDictionary[Camera, list[list[float]] | None]" = weakref.WeakKeyDictionary()


def camera_calibration(camera: Camera) -> list[list[float]] | None:
    """The camera's homography (world ground plane -> image pixels) as a 3x3 nested list, or None
    when it has no calibration.txt or an unusable one (malformed, singular; logged once). Read once
    per camera."""
    if camera not in _CALIBRATIONS:
        h = None
        if camera.calibration_path.is_file():
            try:
                h = camera.homography()
                if not np.all(np.isfinite(h)) or np.linalg.cond(h) * np.finfo(float).eps >= 1:
                    log.warning("%s: singular homography; the camera's frames go without calibration",
                                camera.calibration_path)
                    h = None
            except SpecError as exc:
                log.warning("%s; the camera's frames go without calibration", exc)
        _CALIBRATIONS[camera] = None if h is None else [[float(v) for v in row] for row in h]
    return _CALIBRATIONS[camera]


def encode_frame(camera: Camera, frame: int, image: np.ndarray, capture_ts: float, session: str = "") -> Item:
    """A frame item. Its meta says what the camera knows about the frame, for every stage to carry
    on (both are `STICKY_META`): "t", when the frame was taken in seconds on the scenario's clock
    (shared by its cameras, unlike `capture_ts`, the time replay published it, which `--speed`
    scales), and "calibration", the camera's homography (world ground plane -> image, 3x3), when
    it has a calibration.txt."""
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise JellyBeanError(f"{camera.video_path}: frame {frame} could not be JPEG-encoded")
    meta: dict = {}
    if camera.offset_s is not None and camera.fps:
        meta["t"] = round(camera.timestamp(frame), 6)
    calibration = camera_calibration(camera)
    if calibration is not None:
        meta["calibration"] = calibration
    return Item(stream=camera.key, frame=frame, capture_ts=capture_ts, kind="frame", meta=meta,
                blobs=[jpeg.tobytes()], session=session)


def _pace(t0: float, t_rel: float, speed: float, stop: threading.Event | None = None) -> None:
    due = t0 + t_rel / speed
    delay = due - time.time()
    if delay > 0:
        if stop is not None:
            stop.wait(delay)
        else:
            time.sleep(delay)


class BrokerReplay:
    """Publish frames into a running deployment and collect its sink."""

    def __init__(self, url: str, *, ca: Path | None = None, speed: float = 1.0, routes_timeout: float = 15.0,
                 drain_s: float = 15.0, limit_s: float | None = None,
                 progress: Callable[[int, int], None] | None = None, preload: bool = False,
                 on_clock: Callable[[str], None] | None = None, site_urls: dict[str, str] | None = None,
                 trace: "LoadTrace | None" = None) -> None:
        from jellybean.agents.transport import MqttLink

        self.speed, self.drain_s, self.limit_s, self.progress = speed, drain_s, limit_s, progress
        if trace is not None and speed != 1.0:
            raise JellyBeanError(f"--speed {speed:g} with a load trace: scale the trace's multipliers instead")
        self.trace = trace
        # Decode and JPEG-encode every frame before the clock starts, so that during the replay this
        # process only publishes, as cameras that encode their own frames (memory: every frame).
        self.preload = preload
        # Called with "start" when the clock starts and "published" after the last frame went out:
        # a benchmark measures the machine over exactly the replay's real-time part.
        self.on_clock = on_clock or (lambda _event: None)
        self.routes_timeout = routes_timeout
        self.session = new_session()
        # A persistent session, so that results published while the broker restarts still reach us.
        self._url, self._ca = url, ca
        self.client_id = f"jb-replay-{self.session}"
        self.link = MqttLink(url, self.client_id, ca=ca, clean=False)
        # With a broker per site (`up --isolate`): each camera publishes at the broker of the site
        # it is at, as a camera on that site's network would; routes and results come over `url`.
        self._site_urls = {site: u for site, u in (site_urls or {}).items() if u != url}  # one link per broker user
        self.site_links = {site: MqttLink(u, f"{self.client_id}-{site}", ca=ca, clean=False)
                           for site, u in self._site_urls.items()}
        self._routes: Routes | None = None
        self._routes_seen = threading.Event()
        self._router = Router({}, {}, {})
        self._listening_since = time.monotonic()
        self.data: RunData | None = None

    def _on_routes(self, topic: str, payload: bytes) -> None:
        if not payload:
            return
        try:
            routes = parse_message(payload, topic, Routes)
        except MessageError as exc:
            log.warning("dropped: %s", exc)
            return
        self._routes = routes
        self._router.update(routes.routing, routes.placements, routes.keyed)
        if self.data is not None and (not self.data.routes_log or self.data.routes_log[-1][1] != routes.version):
            doc = routes.plan_doc or {}
            cost, predicted = doc.get("cost", {}), doc.get("predicted", {})
            self.data.routes_log.append((time.time(), routes.version, routes.plan,
                                         cost.get("total") if isinstance(cost, dict) else None,
                                         predicted.get("accuracy") if isinstance(predicted, dict) else None))
        self._routes_seen.set()

    def _on_sink(self, topic: str, payload: bytes) -> None:
        now = time.time()
        try:
            item = decode_item(payload, topic)
        except MessageError as exc:
            log.warning("dropped: %s", exc)
            if self.data:
                self.data.sink.rejected += 1
            return
        if self.data:
            if item.session != self.session:
                self.data.foreign += 1
                return
            self.data.sink.add(item, now)

    def _on_metrics(self, topic: str, payload: bytes) -> None:
        try:
            m = parse_message(payload, topic, Metrics)
        except MessageError:
            return
        if self.data:
            self.data.agent_metrics[m.agent] = m

    def run(self, scenario: Scenario) -> RunData:
        from jellybean.agents.deployment import assign_cameras

        data = self.data = RunData(mode="broker", speed=self.speed, started_at=time.time(), session=self.session,
                                   trace=self.trace.path if self.trace else None)
        cams = playable_cameras(scenario, data.problems)
        self.link.subscribe(topics.ROUTES, self._on_routes)
        # Early, so that each agent's counters before the clock starts are known (see _baselines).
        self.link.subscribe(f"{topics.ROOT}/agents/+/metrics", self._on_metrics, qos=0)
        self._listening_since = time.monotonic()
        self.link.start()
        for link in self.site_links.values():
            link.start()
        try:
            self.link.wait_connected()
            for link in self.site_links.values():
                link.wait_connected()
            if not self._routes_seen.wait(self.routes_timeout):
                raise JellyBeanError(f"no routes on {topics.ROUTES} within {self.routes_timeout:.0f} s; is "
                                     "`jellybean deploy` (or `jellybean up`) running against this broker?")
            routes = self._routes
            data.plan_doc = routes.plan_doc
            self.link.subscribe(routes.sink_topic, self._on_sink)
            time.sleep(0.3)  # let the subscriptions land before the first frame
            data.camera_sites = assign_cameras(routes, [c.key for c in cams])
            entry = [(src, op) for src, ops in routes.sources.items() for op in ops]
            total = sum(c.frame_count or 0 for c in cams)
            frames = self._frames(cams, data)
            self._baselines(data, routes)
            self.on_clock("start")
            t0 = data.clock_start = time.time()
            data.metrics_at_start = dict(data.agent_metrics)
            sent = 0
            rank = {cam.key: i for i, cam in enumerate(sorted(cams, key=lambda c: c.key))}
            for t_rel, cam, frame, ready in frames:
                if self.trace is not None:
                    due = self.trace.wall_time(t_rel)
                    if self.trace.mode == "cameras" and rank[cam.key] >= self.trace.cameras_at(due):
                        data.held_back += 1
                        continue
                    _pace(t0, due, 1.0)
                else:
                    _pace(t0, t_rel, self.speed)
                item = replace(ready, capture_ts=time.time()) if isinstance(ready, Item) else \
                    encode_frame(cam, frame, ready, time.time(), self.session)
                site = data.camera_sites[cam.key]
                for source, op in entry:
                    dest = self._router.next_site(f"{source}->{op}", site, cam.key)
                    if dest is None:
                        data.problems.append(f"no site runs {op}; frame {cam.key}/{frame} not sent")
                        continue
                    payload = encode_item(item)
                    self.site_links.get(site, self.link).publish(topics.data(dest, op), payload)
                    data.link_bytes[(site, dest)] += len(payload)
                data.published[cam.key].add(frame)
                data.media_seconds = max(data.media_seconds, t_rel + 1.0 / (cam.fps or 10.0))
                sent += 1
                if sent % 10 == 0:
                    data.timeline.append((time.time() - t0, data.sink.count()))
                    data.offered.append((time.time() - t0, sent))
                if self.progress:
                    self.progress(sent, total)
            self.on_clock("published")
            keys = {(s, f) for s, fs in data.published.items() for f in fs}
            # Wait for the last results until all are in, the drain time is up, or nothing has come
            # for QUIET_S (longer than an agent holds an item before dropping it as late).
            deadline = time.monotonic() + self.drain_s
            last_count, last_change = data.sink.count(), time.monotonic()
            while time.monotonic() < deadline and not data.sink.wait_for(keys, 1.0):
                data.timeline.append((time.time() - t0, data.sink.count()))
                if data.sink.count() != last_count:
                    last_count, last_change = data.sink.count(), time.monotonic()
                elif time.monotonic() - last_change > QUIET_S:
                    break
            data.timeline.append((time.time() - t0, data.sink.count()))
            self._wait_for_metrics(data, time.time() + 0.5, min(5.0, self.drain_s))
            data.seconds = time.time() - t0
        finally:
            self.link.stop()
            for link in self.site_links.values():
                link.stop()
            self._forget_session()
        return data

    def _frames(self, cams: list[Camera], data: RunData) -> Iterable[tuple[float, Camera, int, "np.ndarray | Item"]]:
        """The frames to publish, in capture order: decoded images, or with `preload` the frame
        items made beforehand (their capture time is set when each is published)."""
        frames = schedule(cams, data.problems, self.limit_s)
        if not self.preload:
            return frames
        return [(t, cam, frame, encode_frame(cam, frame, image, 0.0, self.session)) for t, cam, frame, image in frames]

    def _baselines(self, data: RunData, routes: Routes, timeout: float = 3.0) -> None:
        """Wait (at most `timeout`) until every agent has sent its metrics once (an agent of every
        site that runs an operator heard, and one metrics interval listened), so that what each
        operator receives during the replay is the difference of its agents' counters."""
        sites = {site for where in routes.placements.values() for site in where}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metrics = list(data.agent_metrics.values())
            interval = max((m.interval_s for m in metrics), default=0.0)
            if not sites - {m.site for m in metrics} and time.monotonic() - self._listening_since > interval + 0.25:
                return
            time.sleep(0.05)

    def _wait_for_metrics(self, data: RunData, after: float, timeout: float) -> None:
        """Wait for one metrics round sent after `after` from every agent heard (their byte counts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metrics = list(data.agent_metrics.values())
            if metrics and all(m.sent_at >= after for m in metrics):
                return
            time.sleep(0.1)

    def _forget_session(self) -> None:
        """Remove our persistent sessions from the brokers (a clean connect with the same id)."""
        from jellybean.agents.transport import MqttLink

        for url, client_id in [(self._url, self.client_id),
                               *((u, f"{self.client_id}-{site}") for site, u in self._site_urls.items())]:
            link = MqttLink(url, client_id, ca=self._ca, clean=True)
            try:
                link.start()
                link.wait_connected(3.0)
            except JellyBeanError as exc:
                log.info("could not remove the replay's broker session: %s", exc)
            finally:
                link.stop()
