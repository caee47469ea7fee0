"""Every MQTT topic JellyBean uses, in one place (the broker's ACL is generated from these).

    jb/v1/agents/{agent}/announce     agent -> controller, retained: what the agent has
    jb/v1/agents/{agent}/status       agent, retained: "online"; its last will sets "offline"
    jb/v1/agents/{agent}/heartbeat    agent -> controller, every few seconds
    jb/v1/agents/{agent}/metrics      agent -> controller, counters and latency percentiles
    jb/v1/agents/{agent}/model-request  agent -> controller: send me this model file
    jb/v1/assign/{agent}              controller -> agent, retained, versioned assignment
    jb/v1/models/{agent}/{sha256}     controller -> agent: checksummed chunks of a model file
    jb/v1/routes                      controller -> sources, retained: where each camera's frames go
    jb/v1/data/{site}/{operator}      items for `operator` at `site` (QoS 1)
    jb/v1/data/{site}/{operator}/{agent}  items for `operator` addressed to one of the site's agents
                                      (a protected operator's coding group spread over its workers)
    jb/v1/acks/{site}/{operator}      a replica of an operator with re-sends -> that operator's producers
                                      at `site`: this item was served (QoS 0, keys only); over any link,
                                      either way, since acknowledgements go back the way data came
    jb/v1/sink/{workflow}             the last operator's output (QoS 1)
    jb/v1/links/{bridge}/state        a site broker's bridge, retained: "1" connected, "0" not (Mosquitto's
                                      bridge notifications; "0" at the far end is the bridge's last will)

An agent may publish only under jb/v1/agents/{its name}/, on data and acknowledgement topics and on
the sink; it may read only its own assignment and models and the data and acknowledgement topics of
its site.
"""

from __future__ import annotations

import re

ROOT = "jb/v1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_name(name: str, what: str = "agent name") -> str:
    """Names become topic levels and broker user names: no '/', '+', '#', spaces."""
    if not _NAME.match(name or ""):
        from jellybean.errors import JellyBeanError
        raise JellyBeanError(
            f"{what} '{name}' is not usable as an MQTT topic level; use letters, digits, '.', '_' "
            f"and '-' (at most 63, starting with a letter or digit)")
    return name


def agent(name: str, leaf: str) -> str:
    return f"{ROOT}/agents/{name}/{leaf}"


def announce(name: str) -> str:
    return agent(name, "announce")


def status(name: str) -> str:
    return agent(name, "status")


def heartbeat(name: str) -> str:
    return agent(name, "heartbeat")


def metrics(name: str) -> str:
    return agent(name, "metrics")


def model_request(name: str) -> str:
    return agent(name, "model-request")


def assignment(name: str) -> str:
    return f"{ROOT}/assign/{name}"


def model_chunks(name: str, sha256: str) -> str:
    return f"{ROOT}/models/{name}/{sha256}"


def data(site: str, operator: str) -> str:
    return f"{ROOT}/data/{site}/{operator}"


def direct(site: str, operator: str, agent: str) -> str:
    """One agent's own queue for `operator` at `site`: a producer that must choose the worker (the
    members of a parity group each on a different one, as ParM's frontend sends them) sends here."""
    return f"{ROOT}/data/{site}/{operator}/{agent}"


def data_operator(topic: str) -> str:
    """'jb/v1/data/SITE/OP' or 'jb/v1/data/SITE/OP/AGENT' -> OP (any other topic: its last level)."""
    parts = topic.split("/")
    if len(parts) in (5, 6) and "/".join(parts[:3]) == f"{ROOT}/data":
        return parts[4]
    return parts[-1]


def ack(site: str, operator: str) -> str:
    return f"{ROOT}/acks/{site}/{operator}"


def sink(workflow: str) -> str:
    return f"{ROOT}/sink/{workflow}"


def link_state(bridge: str) -> str:
    return f"{ROOT}/links/{bridge}/state"


def parse_link_state(topic: str) -> str | None:
    """'jb/v1/links/BRIDGE/state' -> BRIDGE, else None."""
    parts = topic.split("/")
    if len(parts) == 5 and "/".join(parts[:3]) == f"{ROOT}/links" and parts[4] == "state":
        return parts[3]
    return None


ROUTES = f"{ROOT}/routes"
ALL_AGENTS = f"{ROOT}/agents/+/+"


def parse_agent_topic(topic: str) -> tuple[str, str] | None:
    """'jb/v1/agents/NAME/LEAF' -> (NAME, LEAF), else None."""
    parts = topic.split("/")
    if len(parts) == 5 and "/".join(parts[:3]) == f"{ROOT}/agents":
        return parts[3], parts[4]
    return None
