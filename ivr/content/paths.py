"""Where the product's data lives: faq/, prompts/, config/, models/ and the per-user cache.

The data directories sit beside the ``ivr`` package (the repository root). ``IVR_HOME`` points elsewhere
(a deployment with its own FAQ and prompts); ``IVR_CACHE_DIR`` moves the cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("IVR_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def faq_dir() -> Path:
    return home() / "faq"


def prompts_dir() -> Path:
    return home() / "prompts"


def config_dir() -> Path:
    return home() / "config"


def models_dir() -> Path:
    return home() / "models"


def cache_dir() -> Path:
    env = os.environ.get("IVR_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ivr-smartca"
