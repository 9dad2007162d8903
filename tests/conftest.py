"""Each test's tier is the folder it lives in: the marker comes from the path, so
that `-m unit` selects exactly tests/unit and no module can claim another tier."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# folder under tests/ -> marker (declared in pyproject.toml)
TIERS = {
    "unit": "unit",
    "bench": "bench",
    "image": "image",
    "integration": "integration",
    "e2e": "e2e",
    "container": "container",
}


def tier_of(path: Path) -> str:
    """The marker of a test file, from its first folder under tests/."""
    parts = path.resolve().relative_to(TESTS).parts
    if len(parts) < 2 or parts[0] not in TIERS:
        raise pytest.UsageError(f"{path}: a test lives in one of tests/{{{','.join(TIERS)}}}/")
    return TIERS[parts[0]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(item.path))
