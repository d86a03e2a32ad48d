"""Version labels resolve offline (config.versions): no minor -> the default, stable-1.3x -> that minor."""

from __future__ import annotations

import pytest

from kubeboot.config.errors import ConfigError
from kubeboot.config.loader import build_init_config
from kubeboot.config.versions import DEFAULT_KUBERNETES_VERSION, MINOR_RELEASES, Version


def _version(label: str) -> str:
    cfg = build_init_config([{"kind": "ClusterConfiguration", "apiVersion": "kubeadm.k8s.io/v1beta4",
                              "kubernetesVersion": label}], fill_node_defaults=False)
    return cfg.version.text


@pytest.mark.parametrize("label", ["stable", "stable-1", "latest", "latest-1"])
def test_a_label_without_minor_means_the_default_version(label: str) -> None:
    assert _version(label) == DEFAULT_KUBERNETES_VERSION


@pytest.mark.parametrize("minor", [34, 35, 36])
@pytest.mark.parametrize("kind", ["stable", "latest"])
def test_a_label_with_a_supported_minor_means_that_minor(kind: str, minor: int) -> None:
    text = _version(f"{kind}-1.{minor}")
    assert text == MINOR_RELEASES[minor]
    assert Version.parse(text).minor == minor


def test_a_label_with_an_unsupported_minor_is_refused_naming_the_range() -> None:
    with pytest.raises(ConfigError) as err:
        _version("stable-1.33")
    assert "kubernetesVersion" in str(err.value)
    assert "stable-1.33 is not supported: kubeboot supports v1.34.x to v1.36.x" in str(err.value)
