"""Taking over a lost agent's broker session: what it held goes where its operators run now.

An agent acknowledges an item only once its work is done, and its session is persistent, so what
it held when it died, and what reached its site's topics before the re-plan, waits at the broker
in its session. When the controller re-plans around the agent, a `SessionDrain` resumes that
session (the same client id), takes the queued and in-flight items and publishes each to a site
that runs its operator now, acknowledging it only once that publish is acknowledged. Nothing new
is subscribed. An agent that comes back takes its session back (the broker disconnects the drain,
which does not reconnect); whatever is left is then the agent's own again.

A broker that binds client ids to user names lets only the agent's own user resume its session:
then the drain needs that user's URL (`deploy --takeover-credentials`), or the items wait for the
agent to return.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from jellybean.agents import topics
from jellybean.agents.items import MessageError, decode_item
from jellybean.agents.routing import Router
from jellybean.agents.transport import Done, MqttLink

log = logging.getLogger(__name__)


class SessionDrain:
    """Empties agent `agent`'s session (its site `site`) into the sites that run its operators now."""

    def __init__(self, url: str, agent: str, site: str, placements: dict[str, dict[str, float]],
                 keyed: dict[str, str], *, ca: Path | None = None, quiet_s: float = 2.0,
                 connect_timeout_s: float = 10.0, on_event: Callable[[str], None] | None = None,
                 site_lives: bool = False) -> None:
        self.agent, self.site = agent, site
        # Anywhere but the lost site itself; or, when only the agent died (`site_lives`), to the
        # site's other agents as well, through the shared subscriptions it was one of.
        others = {op: {s: w for s, w in where.items() if site_lives or s != site} for op, where in placements.items()}
        self._router = Router({}, others, keyed)
        # Its shared subscriptions still draw new items to the session. The broker sends what it
        # queued first (leaving a subscription would drop that), so they are left once an item
        # captured after the takeover comes.
        self._leave = [topics.data(site, "+")] + [f"$share/{site}/{topics.data(site, op)}" for op in placements] \
            + [topics.direct(site, op, agent) for op in placements] if site_lives else []
        self._taken_at = float("inf")
        self.link = MqttLink(url, f"jb-agent-{agent}", ca=ca, clean=False, reconnect=False)
        self.quiet_s, self.connect_timeout_s = quiet_s, connect_timeout_s
        self.forwarded = 0
        self.kept = 0          # items for operators that run nowhere else: left in the session
        self._last = time.monotonic()
        self._on_event = on_event or (lambda what: None)
        self._thread: threading.Thread | None = None

    def start(self) -> "SessionDrain":
        self.link.handle(topics.data(self.site, "#"), self._on_item)   # the site's topics and its own ones
        self._thread = threading.Thread(target=self._run, name=f"drain-{self.agent}", daemon=True)
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def _on_item(self, topic: str, payload: bytes, ack: Done) -> None:
        self._last = time.monotonic()
        operator = topics.data_operator(topic)
        try:
            item = decode_item(payload, topic)
        except MessageError as exc:
            log.warning("dropped from %s's session: %s", self.agent, exc)
            ack()
            return
        if self._leave and item.capture_ts > self._taken_at:
            leave, self._leave = self._leave, []
            for t in leave:
                self.link.unsubscribe(t)
        site = self._router.next_site(f"*->{operator}", self.site, item.stream)
        if site is None:
            self.kept += 1   # not acknowledged: it stays for the agent's return
            return
        self.link.publish(topics.data(site, operator), payload, on_done=ack)
        self.forwarded += 1

    def _run(self) -> None:
        self.link.start()
        try:
            self.link.wait_connected(self.connect_timeout_s)
        except Exception as exc:  # noqa: BLE001 - the items wait in the session for the agent instead
            self._on_event(f"could not take over {self.agent}'s session: {exc}")
            self.link.stop()
            return
        self._taken_at = time.time()
        self._last = time.monotonic()
        while not self.link.ended.is_set():
            if time.monotonic() - self._last >= self.quiet_s and self.link.pending() == 0:
                break
            self.link.ended.wait(0.1)
        taken_back = self.link.ended.is_set()
        self.link.stop()
        self._on_event(f"took over {self.agent}'s session: {self.forwarded} item(s) sent where their operators "
                       f"run now" + (f", {self.kept} left for it" if self.kept else "")
                       + (" (the agent took its session back)" if taken_back else ""))
