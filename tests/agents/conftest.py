"""Broker fixtures: a real, plain Mosquitto and a real Mosquitto with TLS, passwords and ACL.

Broker tests run against a real Mosquitto (DESIGN.md); a missing one fails them, it does not skip
them, because CI installs it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jellybean.agents.broker import BrokerConfig, MosquittoBroker, find_mosquitto, free_port, write_broker_config

# pytest imports every conftest.py as the module `conftest`, so once this one is loaded, the
# `from conftest import tiny_cnn` in tests elsewhere would find this file, not tests/conftest.py.
# Names this file lacks are therefore looked up in tests/conftest.py (PEP 562).
_spec = importlib.util.spec_from_file_location("_jellybean_tests_conftest", Path(__file__).parents[1] / "conftest.py")
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)


def __getattr__(name: str):
    return getattr(_root, name)


SECURE_AGENTS = ["edge-1", "hub-1"]


def _require_mosquitto() -> str:
    executable = find_mosquitto()
    if executable is None:
        pytest.fail("mosquitto is not installed (not on PATH nor in /usr/sbin): broker tests need the real broker; "
                    ".ci/run installs it (apt-get install mosquitto)", pytrace=False)
    return executable


@pytest.fixture
def mosquitto(tmp_path: Path):
    """A plain, anonymous Mosquitto on a free loopback port; yields its URL mqtt://127.0.0.1:PORT."""
    with MosquittoBroker(None, free_port(), workdir=tmp_path / "mosquitto", executable=_require_mosquitto()) as broker:
        yield broker.url


@pytest.fixture
def secure_broker(tmp_path: Path):
    """Mosquitto on the TLS, password and ACL configuration that write_broker_config writes for
    agents edge-1 and hub-1; yields the BrokerConfig (url, ca, credentials, url_for(user))."""
    executable = _require_mosquitto()
    config: BrokerConfig = write_broker_config(tmp_path / "broker", agents=SECURE_AGENTS, port=free_port())
    with MosquittoBroker(config.conf, workdir=tmp_path / "broker-run", executable=executable):
        yield config
