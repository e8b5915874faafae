"""Shared fixtures."""

from __future__ import annotations

import pytest

from ivr.content.faq import load_faq


@pytest.fixture(scope="session")
def faq():
    """The product FAQ as shipped in faq/."""
    return load_faq()


@pytest.fixture(scope="session")
def matcher(faq):
    """A matcher over the product FAQ with the shipped settings (built once: construction precomputes)."""
    from ivr.language.match import Matcher

    return Matcher(faq)


@pytest.fixture(scope="session", autouse=True)
def _private_cache_and_logs(tmp_path_factory):
    """Keep the tests out of the user's speech cache, the repository's logs/ and prompts/audio/: one fresh
    cache for the whole run (so a fresh machine and a used one run the same code), call logs under a temp
    dir, and an empty recordings directory."""
    import os

    saved = {k: os.environ.get(k) for k in ("IVR_CACHE_DIR", "IVR_LOG_DIR", "IVR_RECORDINGS_DIR")}
    os.environ["IVR_CACHE_DIR"] = str(tmp_path_factory.mktemp("ivr-cache"))
    os.environ["IVR_LOG_DIR"] = str(tmp_path_factory.mktemp("ivr-logs"))
    # no recorded prompts unless a test makes some: prompts/audio/ on a deployment must not change the tests
    os.environ["IVR_RECORDINGS_DIR"] = str(tmp_path_factory.mktemp("ivr-recordings"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A copy of the product's data files (faq/, prompts/, config/) under IVR_HOME, for a test to break."""
    import shutil

    from ivr.content import config, paths

    home = tmp_path / "home"
    for d in ("faq", "prompts", "config"):
        shutil.copytree(paths.home() / d, home / d)
    monkeypatch.setenv("IVR_HOME", str(home))
    config.load.cache_clear()
    yield home
    config.load.cache_clear()


@pytest.fixture
def no_sound_devices(monkeypatch):
    """FAKE PortAudio device list: a machine without a sound card, on every machine (so the "no device"
    messages are tested on a developer's laptop too). ``sounddevice.query_devices`` lists no device, and
    a query for the default or a numbered one fails the way real PortAudio does here (this CI machine has
    no sound card: "Error querying device -1"). The real library is queried by the tests that pass a
    device number no machine has."""
    import sounddevice as sd

    def fake_query_devices(device=None, kind=None):
        if device is None and kind is None:
            return sd.DeviceList([])
        raise sd.PortAudioError(f"Error querying device {-1 if device is None else device}")

    monkeypatch.setattr(sd, "query_devices", fake_query_devices)
