"""Shared fixtures."""

from __future__ import annotations

import pytest

from ivr.faq import load_faq


@pytest.fixture(scope="session")
def faq():
    """The product FAQ as shipped in faq/."""
    return load_faq()


@pytest.fixture(scope="session")
def matcher(faq):
    """A matcher over the product FAQ with the shipped settings (built once: construction precomputes)."""
    from ivr.match import Matcher

    return Matcher(faq)
