"""The MQTT transport: one paho client, one named network thread, capped jittered reconnects.

The transport sees only topics and bytes. Callers register handlers per topic filter; handlers run
on the network thread and must be quick (the runtime only enqueues). A handler that raises is
logged and the message dropped: a bad message never stops the client.

Acknowledgements are manual, so that a message is acknowledged to the broker only once its work is
done: a plain handler's message when the handler returns; a `manual` handler's when it calls the
acknowledgement it was given (typically once the item's outputs are themselves acknowledged, `on_done` of
`publish`). A client that dies holding messages gets them again from its persistent session.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt

from jellybean.errors import JellyBeanError

log = logging.getLogger(__name__)
Handler = Callable[[str, bytes], None]
Done = Callable[[], None]
ManualHandler = Callable[[str, bytes, Done], None]


class Countdown:
    """Calls `done` once every holder has released it (thread-safe, at most once).

    Its creator is the first holder and releases by calling it; `hold()` adds a holder, who
    releases by calling what it returns. A received message's acknowledgement is one: the
    dispatcher and every manual handler hold it. So is "all of a batch's outputs are acknowledged"."""

    __slots__ = ("_done", "_holders", "_lock")

    def __init__(self, done: Done) -> None:
        self._done = done
        self._holders = 1
        self._lock = threading.Lock()

    def hold(self) -> "Countdown":
        with self._lock:
            self._holders += 1
        return self

    def __call__(self) -> None:
        with self._lock:
            if self._holders <= 0:
                return
            self._holders -= 1
            if self._holders:
                return
        self._done()


def _unshared(topic_filter: str) -> str:
    """`$share/GROUP/a/b` -> `a/b`: messages of a shared subscription arrive on the plain topic."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter in [½·d, d]: reconnecting clients spread out."""

    base_s: float = 0.2
    cap_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random = random.Random()) -> float:
        d = min(self.cap_s, self.base_s * (2 ** min(attempt, 30)))
        return d * rng.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


class MqttLink:
    """A long-lived MQTT connection that keeps itself up.

    - persistent session (clean_session=False, fixed client id): QoS 1 messages queued for us
      while we were away are delivered after a reconnect, so a reconnect loses nothing;
    - subscriptions are renewed on every (re)connect;
    - `on_connect` callbacks run after each (re)connect (agents re-announce there).
    """

    def __init__(self, url: str, client_id: str, *, ca: Path | str | None = None, will: Will | None = None,
                 backoff: Backoff = Backoff(), keepalive: int = 10, clean: bool = False,
                 max_inflight: int = 200, reconnect: bool = True) -> None:
        from jellybean.agents.broker import configure_client, parse_broker_url

        self.address = parse_broker_url(url)
        self.client_id = client_id
        self.backoff = backoff
        # False: one connection only (a session taken over for a while must not take it back
        # from its owner when the owner returns and the broker disconnects us).
        self.reconnect = reconnect
        self.ended = threading.Event()
        self.keepalive = keepalive
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=clean, protocol=mqtt.MQTTv311)
        configure_client(self._client, self.address, Path(ca) if ca else None)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        self._client.manual_ack_set(True)
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        # Only the network thread writes to the socket: without this, paho lets a worker's publish
        # write while the loop writes too, and Mosquitto drops the garbled connection under load.
        self._client.on_socket_register_write = lambda *args: None
        self._subs: dict[str, tuple[int, Handler, bool, bool]] = {}   # filter -> (qos, handler, manual, subscribed)
        self._lock = threading.Lock()
        self._generation = 0                  # connections so far: acks are only valid on their own
        self._done: dict[int, Callable[[], None] | None] = {}   # mid -> on_done of a QoS 1 publish
        self._early: set[int] = set()         # mids acknowledged before publish() registered them
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._connect_hooks: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self.connects = 0
        self.rejected = 0
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "MqttLink":
        self._thread = threading.Thread(target=self._run, name=f"mqtt-reconnect-{self.client_id}", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> None:
        if not self._connected.wait(timeout):
            why = f": {self.last_error}" if self.last_error else ""
            raise JellyBeanError(f"could not connect to the broker at {self.address.host}:{self.address.port} "
                                 f"within {timeout:.0f} s{why}; is it running, and are the URL and credentials right?")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, *, disconnect: bool = True) -> None:
        """Stop. `disconnect=False` drops the socket without DISCONNECT, so the broker sends our will."""
        self._stop.set()
        try:
            if disconnect:
                self._client.disconnect()
            else:
                sock = self._client.socket()
                if sock is not None:
                    sock.close()
        except Exception:  # noqa: BLE001 - closing a dead socket is fine
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._client.connect(self.address.host, self.address.port, keepalive=self.keepalive)
            except (OSError, ValueError) as exc:
                self.last_error = str(exc)
                delay = self.backoff.delay(attempt)
                attempt += 1
                log.info("broker %s:%s unreachable (%s); retrying in %.2f s",
                         self.address.host, self.address.port, exc, delay)
                self._stop.wait(delay)
                continue
            while not self._stop.is_set():
                rc = self._client.loop(timeout=0.1)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                if self._connected.is_set():
                    attempt = 0
            self._connected.clear()
            if self._stop.is_set() or not self.reconnect:
                break
            delay = self.backoff.delay(attempt)
            attempt += 1
            log.warning("lost the broker connection; reconnecting in %.2f s", delay)
            self._stop.wait(delay)
        try:
            self._client.loop(timeout=0.05)  # flush a final DISCONNECT
        except Exception:  # noqa: BLE001
            pass
        self.ended.set()

    # -- callbacks -------------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.error("%s", self.last_error)
            return
        self.connects += 1
        self._generation += 1
        sock = client.socket()
        if sock is not None and hasattr(sock, "setsockopt"):
            # Small messages (heartbeats, detections) must not wait ~40 ms for a delayed ACK.
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        with self._lock:
            subs = [(t, q) for t, (q, _, _, subscribed) in self._subs.items() if subscribed]
        if subs:
            client.subscribe(subs)
        self._connected.set()
        for hook in list(self._connect_hooks):
            try:
                hook()
            except Exception:  # noqa: BLE001 - a hook must not kill the network thread
                log.exception("on-connect hook failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self._connected.clear()

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            handlers = [(h, manual) for f, (_, h, manual, _) in self._subs.items()
                        if mqtt.topic_matches_sub(_unshared(f), message.topic)]
        # The dispatcher holds the ack until every handler has run; manual handlers hold it longer.
        # An ack that outlives its connection is not sent: the broker redelivers the message on the
        # new connection, where the runtime's de-duplication makes it harmless.
        mid, qos, generation = message.mid, message.qos, self._generation
        ack = Countdown(lambda: self._send_ack(mid, qos, generation))
        for handler, manual in handlers:
            try:
                if manual:
                    handler(message.topic, message.payload, ack.hold())
                else:
                    handler(message.topic, message.payload)
            except Exception as exc:  # noqa: BLE001 - drop the message, keep the client
                self.rejected += 1
                log.warning("dropped a message on %s: %s", message.topic, exc)
        ack()

    def _send_ack(self, mid: int, qos: int, generation: int) -> None:
        if qos > 0 and generation == self._generation and self._connected.is_set():
            self._client.ack(mid, qos)

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        with self._lock:
            if mid in self._done:
                done = self._done.pop(mid)
            else:
                self._early.add(mid)
                return
        if done is not None:
            self._call(done)

    @staticmethod
    def _call(done: Callable[[], None]) -> None:
        try:
            done()
        except Exception:  # noqa: BLE001 - a completion must not kill the network thread
            log.exception("publish completion failed")

    # -- API -------------------------------------------------------------------------------------
    def on_connect(self, hook: Callable[[], None]) -> None:
        self._connect_hooks.append(hook)
        if self.connected:
            hook()

    def subscribe(self, topic: str, handler: Handler | ManualHandler, qos: int = 1, *, manual: bool = False) -> None:
        """`manual`: the handler gets a third argument, the message's acknowledgement, and must call it once
        its work is done (until then the broker counts the message as in flight to us)."""
        with self._lock:
            self._subs[topic] = (qos, handler, manual, True)
        if self.connected:
            self._client.subscribe(topic, qos)

    def handle(self, topic: str, handler: ManualHandler) -> None:
        """Handle messages on `topic` that our persistent session already subscribes to, without
        subscribing again (a manual handler: it must call its acknowledgement)."""
        with self._lock:
            self._subs[topic] = (1, handler, True, False)

    def unsubscribe(self, topic: str) -> None:
        with self._lock:
            self._subs.pop(topic, None)
        if self.connected:
            self._client.unsubscribe(topic)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                on_done: Callable[[], None] | None = None) -> None:
        """Queue a message. QoS 1 messages published while disconnected are sent after reconnect;
        `on_done` runs once the broker has acknowledged it (at once for QoS 0)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        # Paho reports QoS 0 messages as published once written; every mid is registered so that
        # a report that comes before the registration is matched to the right message.
        complete_now = qos == 0
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                complete_now = True
            else:
                self._done[info.mid] = None if qos == 0 else on_done
        if complete_now and on_done is not None:
            self._call(on_done)

    def pending(self) -> int:
        """Outgoing messages not yet acknowledged (a rough back-pressure signal)."""
        return len(getattr(self._client, "_out_messages", {}))
