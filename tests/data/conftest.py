"""Where the tests find the real data files: ``$NEUROQ_SHARED_DATA``, else ``shared/data`` beside the
repository (the package itself never looks there)."""
import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]


def shared_data(*parts) -> Path:
    """``shared/data/<parts>``, or skip the test naming what is missing."""
    root = Path(os.environ.get("NEUROQ_SHARED_DATA", _REPO.parent / "shared" / "data"))
    p = root.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs the offline data file {p} (set NEUROQ_SHARED_DATA to the shared/data folder)")
    return p


@pytest.fixture(scope="session")
def nmnist_archive():
    return shared_data("nmnist-small", "nmnist-small.tar.gz")


@pytest.fixture(scope="session")
def fsdd_archive():
    return shared_data("fsdd", "fsdd-recordings.tar.gz")
