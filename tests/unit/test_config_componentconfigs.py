"""KubeletConfiguration and KubeProxyConfiguration checked against their Go types, as kubeadm decodes them:
a wrong type fails naming the field path, an unknown field is warned about (kubeadm's strict-decoding line)
and dropped from what is kept."""

from __future__ import annotations

from typing import Any

import pytest

from kubeboot.config.errors import ConfigError
from kubeboot.config.loader import build_init_config
from kubeboot.config.resolved import InitConfig

INIT = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
        "localAPIEndpoint": {"advertiseAddress": "10.0.0.10"}}
KUBELET = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}
PROXY = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration"}
KUBELET_GVK = 'schema.GroupVersionKind{Group:"kubelet.config.k8s.io", Version:"v1beta1", Kind:"KubeletConfiguration"}'


def load(*docs: dict[str, Any]) -> InitConfig:
    return build_init_config([INIT, *docs])


VALID_KUBELET = [
    ("ints, bools, strings", {"maxPods": 250, "serializeImagePulls": False, "cgroupDriver": "cgroupfs"}),
    ("durations", {"syncFrequency": "1m30s", "cpuCFSQuotaPeriod": "100ms", "shutdownGracePeriod": "0s"}),
    ("maps and lists", {"evictionHard": {"memory.available": "100Mi"}, "clusterDNS": ["10.96.0.10", "fd00::a"],
                        "featureGates": {"NodeSwap": True}}),
    ("nested structs", {"authentication": {"anonymous": {"enabled": False}, "webhook": {"cacheTTL": "2m"}},
                        "memorySwap": {"swapBehavior": "LimitedSwap"}}),
    ("quantities as strings and numbers", {"reservedMemory": [{"numaNode": 0, "limits": {"memory": "1Gi"}},
                                                              {"numaNode": 1, "limits": {"memory": 1073741824}}]}),
    ("taints", {"registerWithTaints": [{"key": "a", "value": "b", "effect": "NoSchedule"}]}),
    ("null leaves the zero value", {"maxPods": None, "authentication": None, "resolvConf": None}),
    ("logging with nanoseconds and a buffer size", {"logging": {"flushFrequency": 5000000000, "verbosity": 4,
                                                                "options": {"json": {"infoBufferSize": "0"}}}}),
    ("a float", {"memoryThrottlingFactor": 0.8}),
]


@pytest.mark.parametrize("fields", [v[1] for v in VALID_KUBELET], ids=[v[0] for v in VALID_KUBELET])
def test_well_typed_kubelet_configuration_is_kept_as_written(fields: dict[str, Any]) -> None:
    cfg = load({**KUBELET, **fields})
    assert cfg.kubelet == {**KUBELET, **fields}
    assert cfg.warnings == ()


WRONG_KUBELET = [
    ("a word for an int32", {"maxPods": "lots"}, "maxPods", "cannot unmarshal string into Go struct field "
     "KubeletConfiguration.maxPods of type int32"),
    ("a float for an int32", {"maxPods": 1.5}, "maxPods", "number 1.5 into Go struct field"),
    ("an int32 out of range", {"port": 2**31}, "port", f"number {2**31} into Go struct field"),
    ("a string for a bool", {"failSwapOn": "false"}, "failSwapOn", "of type bool"),
    ("a number for a string", {"clusterDomain": 5}, "clusterDomain", "of type string"),
    ("a list element", {"clusterDNS": ["10.96.0.10", 7]}, "clusterDNS[1]", "of type string"),
    ("a map value", {"featureGates": {"NodeSwap": "on"}}, "featureGates.NodeSwap", "of type bool"),
    ("a scalar for a struct", {"authorization": "Webhook"}, "authorization", "of type KubeletAuthorization"),
    ("a string for a list", {"clusterDNS": "10.96.0.10"}, "clusterDNS", "of type slice"),
    ("a number for a duration", {"syncFrequency": 60}, "syncFrequency", "of type string"),
    ("a duration that does not parse", {"imageMinimumGCAge": "2 minutes"}, "imageMinimumGCAge",
     'time: invalid duration "2 minutes"'),
    ("a quantity that does not parse", {"reservedMemory": [{"numaNode": 0, "limits": {"memory": "lots"}}]},
     "reservedMemory[0].limits.memory", "quantities must match the regular expression"),
    ("a negative uint32", {"logging": {"verbosity": -1}}, "logging.verbosity", "of type uint32"),
]


@pytest.mark.parametrize(("fields", "path", "fragment"), [w[1:] for w in WRONG_KUBELET],
                         ids=[w[0] for w in WRONG_KUBELET])
def test_a_kubelet_value_of_the_wrong_type_is_a_config_error_naming_the_field(
    fields: dict[str, Any], path: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load({**KUBELET, **fields})
    assert (err.value.document, err.value.field) == ("KubeletConfiguration", path)
    assert fragment in err.value.message


def test_unknown_kubelet_fields_are_warned_about_in_kubeadms_words_and_dropped() -> None:
    cfg = load({**KUBELET, "maxPods": 200, "maxPod": 300, "authentication": {"x509": {"clientCAfile": "/ca"}}})
    assert cfg.kubelet == {**KUBELET, "maxPods": 200, "authentication": {"x509": {}}}
    assert cfg.warnings == (
        f'error unmarshaling configuration {KUBELET_GVK}: strict decoding error: '
        'unknown field "maxPod", unknown field "authentication.x509.clientCAfile"',
    )


def test_field_names_are_case_sensitive_as_in_kubernetes_decoders() -> None:
    cfg = load({**KUBELET, "MaxPods": 10})
    assert "MaxPods" not in cfg.kubelet
    assert 'unknown field "MaxPods"' in cfg.warnings[0]


def test_a_wrong_type_fails_even_next_to_an_unknown_field() -> None:
    with pytest.raises(ConfigError) as err:
        load({**KUBELET, "bogus": 1, "maxPods": "many"})
    assert err.value.field == "maxPods"


def test_kube_proxy_configuration_is_checked_the_same_way() -> None:
    cfg = load({**PROXY, "mode": "nftables", "nftables": {"masqueradeAll": True, "masqueradeBits": 14}})
    assert cfg.kubeproxy == {**PROXY, "mode": "nftables", "nftables": {"masqueradeAll": True}}
    assert ('Kind:"KubeProxyConfiguration"}: strict decoding error: unknown field "nftables.masqueradeBits"'
            in cfg.warnings[0])
    with pytest.raises(ConfigError) as err:
        load({**PROXY, "clientConnection": {"qps": "fast"}})
    assert (err.value.document, err.value.field) == ("KubeProxyConfiguration", "clientConnection.qps")
    assert "of type float64" in err.value.message


def test_the_kept_documents_are_what_the_node_files_and_config_maps_get() -> None:
    from kubeboot.tasks.kubeletconfig import cluster_kubelet_config

    cfg = load({**KUBELET, "maxPods": 50, "notAField": True})
    doc = cluster_kubelet_config(cfg, resolved_active=False)
    assert doc["maxPods"] == 50
    assert "notAField" not in doc
