"""The systemd kubelet driver: the systemctl commands kubeadm's initsystem runs, and its warnings when
systemd or the kubelet unit is missing or failing. ``systemctl`` is replaced by a recording fake."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from kubeboot.tasks.kubelet import KubeletDriver, SystemdKubelet


class FakeSystemctl:
    """Answers systemctl commands; ``fail`` names the subcommands that exit non-zero."""

    def __init__(self, *, unit_exists: bool = True, fail: tuple[str, ...] = (), state: str = "active") -> None:
        self.unit_exists = unit_exists
        self.fail = fail
        self.state = state
        self.commands: list[str] = []

    def __call__(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        sub = args[1]
        self.commands.append(" ".join(args[1:]))
        stdout = ""
        if sub == "status" and not self.unit_exists:
            stdout = "○ kubelet.service\n     Loaded: not-found (Reason: Unit kubelet.service not found.)\n"
        if sub == "is-active":
            stdout = self.state + "\n"
        code = 1 if sub in self.fail else 0
        return subprocess.CompletedProcess(list(args), code, stdout, "boom" if code else "")


def driver(fake: FakeSystemctl) -> SystemdKubelet:
    return SystemdKubelet(run=fake, systemctl="/usr/bin/systemctl")


def test_systemd_kubelet_is_a_kubelet_driver() -> None:
    assert isinstance(driver(FakeSystemctl()), KubeletDriver)
    assert driver(FakeSystemctl()).healthz_url == "http://127.0.0.1:10248/healthz"


def test_start_enables_reloads_and_restarts_the_unit_quietly() -> None:
    fake, lines = FakeSystemctl(), []
    driver(fake).start(lines.append)
    assert fake.commands == ["status kubelet", "enable kubelet", "daemon-reload", "restart kubelet"]
    assert lines == []


def test_stop_stops_the_unit() -> None:
    fake, lines = FakeSystemctl(), []
    driver(fake).stop(lines.append)
    assert fake.commands == ["status kubelet", "stop kubelet"]
    assert lines == []


def test_a_failing_restart_asks_the_user_to_start_the_kubelet_by_hand() -> None:
    fake, lines = FakeSystemctl(fail=("restart",)), []
    driver(fake).start(lines.append)
    assert lines == ["[kubelet-start] WARNING: unable to start the kubelet service: [exit status 1: boom]",
                     "[kubelet-start] Please ensure kubelet is reloaded and running manually."]


def test_a_failing_daemon_reload_skips_the_restart() -> None:
    fake, lines = FakeSystemctl(fail=("daemon-reload",)), []
    driver(fake).start(lines.append)
    assert "restart kubelet" not in fake.commands
    assert lines[0] == ("[kubelet-start] WARNING: unable to start the kubelet service: "
                        "[failed to reload systemd: exit status 1: boom]")


def test_a_missing_unit_is_reported_but_still_tried() -> None:
    fake, lines = FakeSystemctl(unit_exists=False), []
    driver(fake).start(lines.append)
    assert lines == ["[kubelet-start] Couldn't detect a kubelet service, can't make sure the kubelet is "
                     "running properly."]
    assert fake.commands[-1] == "restart kubelet"


def test_without_systemctl_nothing_runs_and_the_user_is_told() -> None:
    fake, lines = FakeSystemctl(), []
    kubelet = SystemdKubelet(run=fake, which=lambda _: None)  # a host without systemd
    kubelet.stop(lines.append)
    kubelet.start(lines.append)
    assert fake.commands == []
    assert lines == [
        "[kubelet-start] No supported init system detected, won't make sure the kubelet not running for a short "
        "period of time while setting up configuration for it.",
        "[kubelet-start] No supported init system detected, won't make sure the kubelet is running properly.",
        "[kubelet-start] Please ensure kubelet is reloaded and running manually.",
    ]
    assert kubelet.is_active() is False


@pytest.mark.parametrize(("state", "active"), [("active", True), ("activating", True), ("inactive", False),
                                               ("failed", False)])
def test_a_crash_looping_kubelet_counts_as_active_like_kubeadm(state: str, active: bool) -> None:
    assert driver(FakeSystemctl(state=state)).is_active() is active
