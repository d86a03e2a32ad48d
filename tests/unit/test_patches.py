"""kubeadm's --patches: file names, directory order, the three patch types (RFC 7386, RFC 6902, strategic merge
with corev1.Pod's merge keys), kubeadm's [patches] lines and errors, and patches applied to the static Pods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubeboot.config.loader import build_init_config
from kubeboot.config.models import Patches
from kubeboot.tasks import patches as p
from kubeboot.tasks import smp
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.fsutil import NodeFS
from kubeboot.tasks.phases import controlplane as cp
from kubeboot.tasks.phases import etcd
from kubeboot.tasks.phases.context import NodeContext

V4 = "kubeadm.k8s.io/v1beta4"
TARGETS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubeletconfiguration",
           "corednsdeployment")
SMP, MERGE, JSON = p.STRATEGIC_PATCH, p.MERGE_PATCH, p.JSON_PATCH


# --- file names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "parsed"), [
    pytest.param("kube-apiserver.yaml", ("kube-apiserver", SMP), id="strategic by default"),
    pytest.param("etcd+json.json", ("etcd", JSON), id="json patch in a json file"),
    pytest.param("kube-scheduler0+merge.yaml", ("kube-scheduler", MERGE), id="suffix and merge"),
    pytest.param("kube-controller-manager-b+strategic.yaml", ("kube-controller-manager", SMP), id="explicit"),
    pytest.param("kubeletconfiguration.yaml", ("kubeletconfiguration", SMP), id="kubelet configuration"),
    pytest.param("etcd.yml", "the file extension must be one of [json yaml]", id="yml is not an extension"),
    pytest.param("README.md", "the file extension must be one of [json yaml]", id="not a patch"),
    pytest.param("kube-proxy.yaml", f"unknown target, must be one of [{' '.join(TARGETS)}]", id="unknown target"),
])
def test_file_names_give_target_and_patch_type(name: str, parsed: tuple[str, str] | str) -> None:
    assert p.parse_filename(name, TARGETS) == parsed


def test_an_unknown_patch_type_after_plus_is_an_error() -> None:
    with pytest.raises(PermanentError, match=r"unknown or missing patch type after '\+', must be one of "
                                             r"\[json merge strategic\]"):
        p.parse_filename("etcd+xml.yaml", TARGETS)


# --- RFC 7386 merge patch: the RFC's own examples (Appendix A) -------------------------------------------------

RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC7386, ids=[f"RFC 7386 A.{i + 1}" for i in range(15)])
def test_merge_patch_follows_rfc_7386(original: Any, patch: Any, result: Any) -> None:
    assert p.merge_patch(original, patch) == result


# --- RFC 6902 JSON patch --------------------------------------------------------------------------------------

RFC6902 = [
    pytest.param({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"},
                 id="add an object member"),
    pytest.param({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
                 {"foo": ["bar", "qux", "baz"]}, id="add an array element"),
    pytest.param({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": "x"}], {"foo": ["bar", "x"]},
                 id="append with -"),
    pytest.param({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"},
                 id="remove an object member"),
    pytest.param({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]},
                 id="remove an array element"),
    pytest.param({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
                 {"baz": "boo", "foo": "bar"}, id="replace a value"),
    pytest.param({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
                 [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
                 {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}, id="move a value"),
    pytest.param({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
                 {"foo": ["all", "cows", "eat", "grass"]}, id="move an array element"),
    pytest.param({"a/b": {"m~n": 1}}, [{"op": "copy", "from": "/a~1b/m~0n", "path": "/c"}],
                 {"a/b": {"m~n": 1}, "c": 1}, id="copy with escaped pointers"),
    pytest.param({"foo": ["bar", "baz"]}, [{"op": "replace", "path": "/foo/-1", "value": "x"}],
                 {"foo": ["bar", "x"]}, id="negative index like json-patch v4"),
]


@pytest.mark.parametrize(("doc", "ops", "result"), RFC6902)
def test_json_patch_follows_rfc_6902(doc: Any, ops: Any, result: Any) -> None:
    assert p.json_patch(doc, ops) == result


@pytest.mark.parametrize("ops", [
    pytest.param([{"op": "add", "path": "/baz/bat", "value": "qux"}], id="add under a missing parent"),
    pytest.param([{"op": "remove", "path": "/nope"}], id="remove a missing member"),
    pytest.param([{"op": "replace", "path": "/nope", "value": 1}], id="replace a missing member"),
    pytest.param([{"op": "test", "path": "/foo", "value": "other"}], id="a failing test"),
    pytest.param([{"op": "frobnicate", "path": "/foo"}], id="an unknown operation"),
])
def test_json_patch_errors_on_a_path_that_does_not_apply(ops: Any) -> None:
    with pytest.raises((p.PatchError, KeyError, IndexError, TypeError)):
        p.json_patch({"foo": "bar"}, ops)


# --- strategic merge patch ------------------------------------------------------------------------------------


def pod() -> dict[str, Any]:
    return {"metadata": {"name": "x", "finalizers": ["a", "b"]}, "spec": {
        "containers": [{"name": "c", "image": "i:1", "command": ["run", "--x"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 80, "name": "http"}],
                        "volumeMounts": [{"mountPath": "/d", "name": "d"}, {"mountPath": "/e", "name": "e"}]}],
        "tolerations": [{"key": "k1"}],
        "volumes": [{"name": "d", "hostPath": {"path": "/d"}}, {"name": "e", "hostPath": {"path": "/e"}}]}}


def container(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_containers_merge_by_name_and_env_by_name() -> None:
    out = smp.strategic_merge(pod(), {"spec": {"containers": [
        {"name": "c", "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]}]}}, smp.POD)
    assert container(out)["image"] == "i:1"
    assert container(out)["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "two"},
                                     {"name": "C", "value": "3"}]


def test_a_new_list_item_lands_after_its_predecessor_in_the_patch() -> None:
    # apimachinery's mergeSortedSlice: [d, e] + patch [d', f] -> [d', f, e]
    out = smp.strategic_merge(pod(), {"spec": {"containers": [{"name": "c", "volumeMounts": [
        {"mountPath": "/d", "readOnly": True}, {"mountPath": "/f", "name": "f"}]}]}}, smp.POD)
    assert container(out)["volumeMounts"] == [{"mountPath": "/d", "name": "d", "readOnly": True},
                                              {"mountPath": "/f", "name": "f"}, {"mountPath": "/e", "name": "e"}]


def test_ports_merge_by_container_port() -> None:
    out = smp.strategic_merge(pod(), {"spec": {"containers": [{"name": "c", "ports": [
        {"containerPort": 80, "hostPort": 80}, {"containerPort": 443}]}]}}, smp.POD)
    assert container(out)["ports"] == [{"containerPort": 80, "hostPort": 80, "name": "http"}, {"containerPort": 443}]


@pytest.mark.parametrize(("patch", "names"), [
    pytest.param({"spec": {"volumes": [{"name": "d", "$patch": "delete"}]}}, ["e"], id="$patch delete an item"),
    pytest.param({"spec": {"volumes": [{"$patch": "replace"}, {"name": "z", "emptyDir": {}}]}}, ["z"],
                 id="$patch replace the list"),
    # apimachinery puts patch items not in the live list before the live-only items (mergeSortedSlice)
    pytest.param({"spec": {"volumes": [{"name": "z", "emptyDir": {}}]}}, ["z", "d", "e"], id="a new name goes first"),
])
def test_list_directives(patch: dict[str, Any], names: list[str]) -> None:
    assert [v["name"] for v in smp.strategic_merge(pod(), patch, smp.POD)["spec"]["volumes"]] == names


def test_lists_without_a_merge_key_are_replaced() -> None:
    out = smp.strategic_merge(pod(), {"spec": {"tolerations": [{"key": "k2"}],
                                               "containers": [{"name": "c", "command": ["other"]}]}}, smp.POD)
    assert out["spec"]["tolerations"] == [{"key": "k2"}]
    assert container(out)["command"] == ["other"]


def test_null_deletes_a_key_and_patch_replace_replaces_a_map() -> None:
    out = smp.strategic_merge(pod(), {"metadata": {"name": None}, "spec": {"volumes": [
        {"name": "d", "hostPath": {"$patch": "replace", "path": "/new"}}]}}, smp.POD)
    assert "name" not in out["metadata"]
    assert out["spec"]["volumes"][0] == {"name": "d", "hostPath": {"path": "/new"}}


def test_primitive_merge_lists_are_unions_and_delete_from_primitive_list_removes() -> None:
    out = smp.strategic_merge(pod(), {"metadata": {"finalizers": ["c", "a"], "$deleteFromPrimitiveList/finalizers":
                                                   ["b"]}}, smp.POD)
    assert out["metadata"]["finalizers"] == ["c", "a"]


def test_a_merge_list_item_without_its_merge_key_is_an_error() -> None:
    with pytest.raises(smp.SMPError, match="does not contain declared merge key: name"):
        smp.strategic_merge(pod(), {"spec": {"containers": [{"image": "x"}]}}, smp.POD)


def test_without_patch_metadata_maps_merge_and_lists_are_replaced() -> None:
    kubelet = {"featureGates": {"A": True}, "clusterDNS": ["10.96.0.10"], "evictionHard": {"memory.available": "1"}}
    out = smp.strategic_merge(kubelet, {"featureGates": {"B": False}, "clusterDNS": ["1.1.1.1"]}, {})
    assert out == {"featureGates": {"A": True, "B": False}, "clusterDNS": ["1.1.1.1"],
                   "evictionHard": {"memory.available": "1"}}


def _merge_fields(defs: dict[str, Any], ref: str, path: str, seen: frozenset[str]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    schema = defs[ref.rsplit("/", maxsplit=1)[-1]]
    for name, prop in (schema.get("properties") or {}).items():
        sub = f"{path}.{name}" if path else name
        if "merge" in prop.get("x-kubernetes-patch-strategy", "").split(","):
            found.add((sub, prop.get("x-kubernetes-patch-merge-key", "")))
        target = (prop.get("items") or prop).get("$ref")
        if target and target not in seen:
            found |= _merge_fields(defs, target, sub, seen | {target})
    return found


def _table_fields(schema: dict[str, Any], path: str = "") -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for name, value in schema.items():
        sub = f"{path}.{name}" if path else name
        if isinstance(value, smp.MergeList):
            found.add((sub, value.key))
            found |= _table_fields(value.items, sub)
        else:
            found |= _table_fields(value, sub)
    return found


@pytest.mark.parametrize("minor", [34, 35, 36])
def test_the_pod_merge_table_is_the_openapi_patch_metadata(minor: int) -> None:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v1.{minor}.0-local-strict"
    defs = json.loads((root / "_definitions.json").read_text())["$defs"]
    pod_ref = "io.k8s.api.core.v1.Pod"
    from_schema = _merge_fields(defs, pod_ref, "", frozenset({pod_ref}))
    # status lists that only the kubelet writes are left out of the table on purpose
    covered = {(f, k) for f, k in from_schema if not f.startswith("status.") or f.count(".") == 1}
    assert _table_fields(smp.POD) == covered


# --- the patches directory ------------------------------------------------------------------------------------


def write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(text)


def test_patches_apply_in_file_order_with_kubeadms_lines(tmp_path: Path) -> None:
    write(tmp_path, "kube-apiserver0+merge.yaml", "metadata:\n  annotations:\n    step: one\n")
    write(tmp_path, "kube-apiserver1+json.json",
          '[{"op": "test", "path": "/metadata/annotations/step", "value": "one"},'
          ' {"op": "replace", "path": "/metadata/annotations/step", "value": "two"}]')
    write(tmp_path, "kube-apiserver2.yaml", "metadata:\n  annotations:\n    last: x\n---\nmetadata:\n  labels:\n"
                                           "    extra: y\n")
    write(tmp_path, "etcd.yaml", "metadata:\n  labels:\n    etcd: y\n")
    write(tmp_path, "notes.txt", "ignore me")
    lines: list[str] = []
    out = p.apply_patches("kube-apiserver", {"metadata": {"name": "kube-apiserver"}}, tmp_path, lines.append)
    assert out == {"metadata": {"name": "kube-apiserver", "annotations": {"step": "two", "last": "x"},
                                "labels": {"extra": "y"}}}
    assert lines == [
        f'[patches] Reading patches from path "{tmp_path}"',
        '[patches] Ignoring file "notes.txt": the file extension must be one of [json yaml]',
        "[patches] Found the following patch files: [etcd.yaml kube-apiserver0+merge.yaml "
        "kube-apiserver1+json.json kube-apiserver2.yaml]",
        "[patches] Ignored the following files: [notes.txt]",
        f'[patches] Applied patch of type "{MERGE}" to target "kube-apiserver"',
        f'[patches] Applied patch of type "{JSON}" to target "kube-apiserver"',
        f'[patches] Applied patch of type "{JSON}" to target "kube-apiserver"'.replace(JSON, SMP),
        f'[patches] Applied patch of type "{SMP}" to target "kube-apiserver"',
    ]


def test_subdirectories_are_walked_in_place_and_empty_files_ignored(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    write(tmp_path / "b", "kube-scheduler.yaml", "metadata:\n  labels:\n    v: b\n")
    write(tmp_path, "a-kube-scheduler.yaml", "")  # unknown target: names must start with the target
    write(tmp_path, "kube-scheduler.yaml", "metadata:\n  labels:\n    v: top\n")
    write(tmp_path, "kube-scheduler9.yaml", "")
    lines: list[str] = []
    out = p.apply_patches("kube-scheduler", {"metadata": {}}, tmp_path, lines.append)
    assert out == {"metadata": {"labels": {"v": "top"}}}  # b/ sorts before the top-level file
    assert '[patches] Ignoring empty file: "kube-scheduler9.yaml"' in lines


def test_a_second_call_with_the_same_announced_set_reads_quietly(tmp_path: Path) -> None:
    write(tmp_path, "etcd.yaml", "metadata:\n  labels:\n    a: b\n")
    announced: set[str] = set()
    first: list[str] = []
    second: list[str] = []
    p.apply_patches("etcd", {}, tmp_path, first.append, announced=announced)
    p.apply_patches("etcd", {}, tmp_path, second.append, announced=announced)
    assert first[0].startswith("[patches] Reading patches from path")
    assert second == [f'[patches] Applied patch of type "{SMP}" to target "etcd"']


def test_a_patch_that_does_not_apply_names_type_target_and_patch(tmp_path: Path) -> None:
    write(tmp_path, "etcd+json.yaml", "- op: remove\n  path: /spec/nope\n")
    with pytest.raises(PermanentError) as err:
        p.apply_patches("etcd", {"spec": {}}, tmp_path, lambda _l: None)
    assert str(err.value).startswith(f'could not apply the following patch of type "{JSON}" to target "etcd":\n'
                                     '[{"op":"remove","path":"/spec/nope"}]\n: ')


@pytest.mark.parametrize(("name", "text", "message"), [
    pytest.param("etcd+xml.yaml", "a: b\n", "unknown or missing patch type after '+'", id="unknown patch type"),
    pytest.param("etcd.yaml", "a: [b\n", "could not convert patch to JSON", id="broken YAML"),
])
def test_a_bad_patch_file_stops_the_read(tmp_path: Path, name: str, text: str, message: str) -> None:
    write(tmp_path, name, text)
    with pytest.raises(PermanentError, match=rf'^could not list patch files for path "{tmp_path}": ') as err:
        p.apply_patches("etcd", {}, tmp_path, lambda _l: None)
    assert message in str(err.value)


def test_a_missing_patches_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="no such file or directory"):
        p.apply_patches("etcd", {}, tmp_path / "nope", lambda _l: None)


def test_an_unknown_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match='unknown patch target name "kube-proxy"'):
        p.apply_patches("kube-proxy", {}, tmp_path, lambda _l: None)


def test_yaml_timestamps_stay_strings(tmp_path: Path) -> None:
    write(tmp_path, "etcd.yaml", "metadata:\n  annotations:\n    day: 2024-01-02\n")
    out = p.apply_patches("etcd", {}, tmp_path, lambda _l: None)
    assert out == {"metadata": {"annotations": {"day": "2024-01-02"}}}


# --- patches on the static Pods --------------------------------------------------------------------------------


def patched_ctx(tmp_path: Path, lines: list[str]) -> NodeContext:
    patches = tmp_path / "patches"
    patches.mkdir()
    write(patches, "kube-apiserver+strategic.yaml", yaml.safe_dump({"spec": {"containers": [
        {"name": "kube-apiserver", "resources": {"requests": {"cpu": "500m"}},
         "env": [{"name": "GOGC", "value": "50"}]}]}}))
    write(patches, "etcd0+json.json", json.dumps([
        {"op": "replace", "path": "/spec/containers/0/livenessProbe/failureThreshold", "value": 20}]))
    write(patches, "etcd1+merge.yaml", "metadata:\n  annotations:\n    patched: \"true\"\n")
    cfg = build_init_config([
        {"apiVersion": V4, "kind": "InitConfiguration", "nodeRegistration": {"name": "cp1"},
         "localAPIEndpoint": {"advertiseAddress": "10.0.0.5"}},
        {"apiVersion": V4, "kind": "ClusterConfiguration"},
    ])
    cfg.init.patches = Patches(directory=str(patches))
    return NodeContext(cfg=cfg, fs=NodeFS(tmp_path / "node"), out=lines.append)


def test_the_phases_apply_patches_last_and_print_kubeadms_lines(tmp_path: Path) -> None:
    lines: list[str] = []
    ctx = patched_ctx(tmp_path, lines)
    etcd.run_etcd_local(ctx)
    cp.run_control_plane(ctx, "kube-apiserver")
    cp.run_control_plane(ctx, "kube-scheduler")
    assert [line for line in lines if "Reading patches" in line] == [
        f'[patches] Reading patches from path "{tmp_path / "patches"}"']
    assert [line for line in lines if "Reading" not in line and "Found" not in line] == [
        '[etcd] Creating static Pod manifest for local etcd in "/etc/kubernetes/manifests"',
        f'[patches] Applied patch of type "{JSON}" to target "etcd"',
        f'[patches] Applied patch of type "{MERGE}" to target "etcd"',
        '[control-plane] Creating static Pod manifest for "kube-apiserver"',
        f'[patches] Applied patch of type "{SMP}" to target "kube-apiserver"',
        '[control-plane] Creating static Pod manifest for "kube-scheduler"',
    ]
    etcd_pod = yaml.safe_load(ctx.fs.path("/etc/kubernetes/manifests/etcd.yaml").read_text())
    assert etcd_pod["spec"]["containers"][0]["livenessProbe"]["failureThreshold"] == 20
    assert etcd_pod["metadata"]["annotations"]["patched"] == "true"
    api = yaml.safe_load(ctx.fs.path("/etc/kubernetes/manifests/kube-apiserver.yaml").read_text())
    box = api["spec"]["containers"][0]
    assert box["resources"] == {"requests": {"cpu": "500m"}}
    assert {"name": "GOGC", "value": "50"} in box["env"]
    assert box["command"][0] == "kube-apiserver"  # the rest of the container survives the merge
    assert api["status"] == {}
    kubernetes_validate.validate(api, "1.36.0", strict=True)


def test_a_failing_patch_stops_the_phase_before_writing(tmp_path: Path) -> None:
    lines: list[str] = []
    ctx = patched_ctx(tmp_path, lines)
    write(Path(ctx.cfg.patches_dir), "kube-scheduler+json.yaml", "- op: remove\n  path: /spec/nothing\n")
    with pytest.raises(PermanentError, match=r'^failed to patch static Pod manifest file for "kube-scheduler": '
                                             r'could not apply the following patch'):
        cp.run_control_plane(ctx, "kube-scheduler")
    assert not ctx.fs.exists("/etc/kubernetes/manifests/kube-scheduler.yaml")
