"""Fixtures for the curation tests: one tiny model per session that always answers 7."""

from __future__ import annotations

import pytest

from curate_helpers import build_seven_model


@pytest.fixture(scope="session")
def seven_model(tmp_path_factory):
    return build_seven_model(tmp_path_factory.mktemp("seven") / "model")
