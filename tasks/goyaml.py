"""YAML as Kubernetes' Go tools write it (sigs.k8s.io/yaml over go-yaml v2), for every file kubeboot
writes that kubeadm writes: static Pod manifests, kubeconfig files, the kubelet configuration.

- keys in go-yaml's order (its keyList.Less: numeric runs compare as numbers);
- strings that go-yaml would read back as something else (``""``, ``true``, ``1.5``, ``0x1``) quoted;
- lists not indented under their key, no line folding.
The emitter is libyaml's (``CSafeDumper``) when PyYAML has it: same output, several times faster.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml

_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _go_key_less(a: str, b: str) -> bool:
    """go-yaml v2 keyList.Less for string keys: non-letters before letters, digit runs compared as numbers."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x == y:
            continue
        xl, yl = x.isalpha(), y.isalpha()
        if xl and yl:
            return x < y
        if xl or yl:
            return yl
        # A zero after non-zero digits of the common prefix is part of a number, not a leading zero.
        seed = int((x == "0" or y == "0") and any(d != "0" for d in _digits_before(a, i)))
        an, ai = _digit_run(a, i, seed)
        bn, bi = _digit_run(b, i, seed)
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return x < y
    return len(a) < len(b)


def _digits_before(s: str, i: int) -> str:
    j = i
    while j > 0 and s[j - 1].isdigit():
        j -= 1
    return s[j:i][::-1]


def _digit_run(s: str, i: int, value: int) -> tuple[int, int]:
    j = i
    while j < len(s) and s[j].isdigit():
        value = value * 10 + int(s[j])
        j += 1
    return value, j


def _go_key_cmp(a: tuple[Any, Any], b: tuple[Any, Any]) -> int:
    ka, kb = str(a[0]), str(b[0])
    return -1 if _go_key_less(ka, kb) else (1 if _go_key_less(kb, ka) else 0)


_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
# Scalars go-yaml v2 resolves to bool, null, float or merge (resolve.go resolveMapList).
_GO_WORDS = frozenset((
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
    "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL", ".inf", ".Inf", ".INF", "+.inf", "+.Inf",
    "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", "<<",
))


def _go_resolves_non_string(dumper: yaml.SafeDumper, s: str) -> bool:
    if s == "" or s in _GO_WORDS:
        return True
    plain = s.replace("_", "")
    if s[:1] in "0123456789+-." and _GO_FLOAT.match(plain):
        return True
    try:
        int(plain, 0)
        return True
    except ValueError:
        pass
    implicit = dumper.resolve(yaml.ScalarNode, s, (True, False))  # type: ignore[no-untyped-call]
    return bool(implicit != "tag:yaml.org,2002:str")


class _GoYAMLDumper(_BaseDumper):  # type: ignore[misc]
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if _go_resolves_non_string(dumper, value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_dict(dumper: yaml.SafeDumper, value: dict[Any, Any]) -> yaml.MappingNode:
    items = sorted(value.items(), key=functools.cmp_to_key(_go_key_cmp))
    return dumper.represent_mapping("tag:yaml.org,2002:map", items)


_GoYAMLDumper.add_representer(str, _represent_str)
_GoYAMLDumper.add_representer(dict, _represent_dict)


def dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_GoYAMLDumper, default_flow_style=False, sort_keys=False, width=2**31 - 1,
                     allow_unicode=True)


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str | bytes) -> Any:
    """YAML that kubeadm or kubeboot wrote (kubeconfigs, manifests, the kubelet configuration), read with
    libyaml's parser when PyYAML has it: the same data as ``yaml.safe_load``, several times faster (a
    kubeconfig's certificate data is most of a phase's parsing). User-written configuration goes through
    ``config.loader``, whose messages name lines."""
    return yaml.load(text, Loader=_Loader)
