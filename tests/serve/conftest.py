from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rtrec.serve.testing import DaemonProcess


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Build daemons in temporary homes; every one still running is killed afterwards."""
    started: list[DaemonProcess] = []

    def make(home: Path | None = None, **kw) -> DaemonProcess:
        d = DaemonProcess(home or tmp_path / "home", **kw)
        started.append(d)
        return d

    yield make
    for d in started:
        d.kill()
