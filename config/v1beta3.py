"""Conversion of kubeadm.k8s.io/v1beta3 documents to v1beta4."""

from __future__ import annotations

from typing import Any

from config import constants as c


def convert_document(doc: dict[str, Any], file: str) -> dict[str, Any]:
    out = dict(doc)
    out["apiVersion"] = c.V1BETA4
    return out
