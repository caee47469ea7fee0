"""A test MQTT client, shared by the broker and security tests: a paho v2 client (MQTT 3.1.1) that
records its CONNACK, its SUBACKs and every message it receives as (topic, payload, retain)."""

from __future__ import annotations

import queue
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

from jellybean.agents.broker import configure_client, connect_kwargs, parse_broker_url


class Probe:
    """A paho v2 client that records its CONNACK and every message it receives."""

    def __init__(self, url: str, ca: Path | None = None, *, will: tuple[str, bytes] | None = None,
                 client_id: str | None = None, clean: bool = True):
        self.address = parse_broker_url(url)
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                                  client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}", clean_session=clean)
        configure_client(self.client, self.address, ca)
        if will:
            self.client.will_set(will[0], will[1], qos=1)
        self.connack: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.error: OSError | None = None  # why connect() could not even open the connection
        self.client.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.client.on_message = lambda c, u, msg: self.messages.put((msg.topic, msg.payload, msg.retain))
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put(rcs)
        # Closed before a CONNACK (e.g. TLS 1.3 refuses a missing client certificate after the handshake).
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.connack.put(None)

    def connect(self, timeout: float = 10.0):
        """The CONNACK reason code; None when none came (the handshake was refused, or failed: then
        `error` holds the exception, e.g. ssl.SSLCertVerificationError)."""
        try:
            self.client.connect(**connect_kwargs(self.address))
        except OSError as exc:  # ssl.SSLError included
            self.error = exc
            return None
        self.client.loop_start()
        try:
            return self.connack.get(timeout=timeout)
        except queue.Empty:
            return None

    def subscribe(self, *topic_filters: str) -> list:
        """The SUBACK's reason codes, one per filter (QoS 1 asked)."""
        self.client.subscribe([(t, 1) for t in topic_filters])
        return self.subacks.get(timeout=10)

    def subscribe_granted(self, *topic_filters: str) -> list:
        """subscribe(), asserting that the broker granted every filter."""
        rcs = self.subscribe(*topic_filters)
        assert all(not rc.is_failure for rc in rcs), rcs
        return rcs

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=10)

    def next(self, timeout: float = 10.0):
        """The next message received, (topic, payload, retain); None when none came."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list:
        out = []
        while not self.messages.empty():
            out.append(self.messages.get_nowait())
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
