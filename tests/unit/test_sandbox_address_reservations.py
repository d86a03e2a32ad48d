"""Sandboxes up side by side on one machine take distinct address blocks; stale reservations are reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeboot.sandbox import addresses


@pytest.fixture(autouse=True)
def private_reservations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(addresses, "RESERVATIONS_DIR", str(tmp_path / "reservations"))
    return tmp_path / "reservations"


def test_two_live_sandboxes_get_different_cluster_blocks() -> None:
    first = addresses.reserve_cluster_indices(2, "/sandboxes/a", lambda owner, index: True)
    second = addresses.reserve_cluster_indices(1, "/sandboxes/b", lambda owner, index: True)
    assert first == [0, 1]
    assert second == [2]


def test_a_block_whose_sandbox_is_gone_is_taken_over_after_the_grace_period(monkeypatch) -> None:
    addresses.reserve_cluster_indices(1, "/sandboxes/dead", lambda owner, index: True)
    assert addresses.reserve_cluster_indices(1, "/sandboxes/new", lambda owner, index: False) == [1]
    monkeypatch.setattr(addresses, "_GRACE_SECONDS", -1.0)
    assert addresses.reserve_cluster_indices(1, "/sandboxes/newer", lambda owner, index: False) == [0]


def test_release_frees_only_the_owners_blocks(private_reservations: Path) -> None:
    mine = addresses.reserve_cluster_indices(1, "/sandboxes/a", lambda owner, index: True)
    other = addresses.reserve_cluster_indices(1, "/sandboxes/b", lambda owner, index: True)
    addresses.release_cluster_indices([*mine, *other], "/sandboxes/a")
    assert sorted(p.name for p in private_reservations.iterdir()) == ["127.77.1"]
