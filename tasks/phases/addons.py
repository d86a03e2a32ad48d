"""``addon/coredns`` and ``addon/kube-proxy`` (kubeadm-spec 2.13): kubeadm's EnsureDNSAddon and
EnsureProxyAddon over the API, as the cluster admin.

Reads: ``ctx.cfg``; ``ctx.kubeconfig("admin.conf")`` (the run's secrets); the patches directory
(``corednsdeployment``); the ``*_proxy`` variables of this process, copied into the kube-proxy DaemonSet
as kubeadm copies its own.
Writes (API), in kubeadm's order:
- CoreDNS: ConfigMap ``coredns`` — created, or updated while it holds kubeadm's own Corefile, left
  alone once a person edited it; ClusterRole and ClusterRoleBinding ``system:coredns``, ServiceAccount
  ``coredns``, Deployment ``coredns`` (create-or-update; an existing Deployment's replica count is kept);
  Service ``kube-dns`` (create; AlreadyExists or Invalid — "IP already allocated" — means update).
- kube-proxy: ConfigMap, DaemonSet, ServiceAccount, ClusterRoleBinding ``kubeadm:node-proxier``, Role and
  RoleBinding ``kube-proxy`` — each create-or-update.
An object already as wanted is not written (its resourceVersion stays). kubeadm's Corefile migration
(``kubeadm upgrade``, an older CoreDNS already installed) is not done: an edited Corefile is kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from kubeboot.config import constants as c
from kubeboot.tasks import kubeapi
from kubeboot.tasks.addons import coredns, kubeproxy
from kubeboot.tasks.errors import PermanentError
from kubeboot.tasks.phases.context import ControlContext

Obj = dict[str, Any]


def _api(ctx: ControlContext) -> k8s.ApiClient:
    data = ctx.kubeconfig(c.ADMIN_CONF)
    if data is None:
        raise PermanentError(f"{c.ADMIN_CONF} is not in this run's secrets: run the kubeconfig phase first")
    return kubeapi.api_client(data)


# --- CoreDNS -------------------------------------------------------------------------------------------

def deployed_replicas(api: k8s.ApiClient) -> int:
    """deployedDNSReplicas: the replicas of the one ``k8s-app=kube-dns`` Deployment, else the default."""
    path = kubeapi.object_path("Deployment", coredns.NAMESPACE) + "?labelSelector=k8s-app%3Dkube-dns"
    items = kubeapi.call(lambda: kubeapi.request(api, "GET", path),
                         "couldn't retrieve DNS addon deployments").get("items") or []
    if len(items) > 1:
        names = ", ".join(str(i.get("metadata", {}).get("name")) for i in items)
        raise PermanentError(f"multiple DNS addon deployments found: {names}")
    if items:
        return int((items[0].get("spec") or {}).get("replicas", coredns.REPLICAS))
    return coredns.REPLICAS


def _ensure_corefile(api: k8s.ApiClient, desired: Obj) -> None:
    existing = kubeapi.get(api, "ConfigMap", coredns.NAME, coredns.NAMESPACE)
    current = "" if existing is None else (existing.get("data") or {}).get("Corefile")
    if current is None:
        raise PermanentError("unable to fetch CoreDNS current installed version and ConfigMap.: "
                             "unable to find the CoreDNS Corefile data")
    if current == "" or coredns.is_default_corefile(current):
        kubeapi.ensure(api, desired)
    else:  # edited by a person: retained for their benefit, as kubeadm does
        kubeapi.ensure_retained(api, desired)


def _update_if_changed(api: k8s.ApiClient, desired: Obj) -> Obj:
    """Re-read and replace (unconditionally, like kubeadm's Update of resourceVersion "0"), unless
    everything wanted is already there."""
    meta = desired["metadata"]
    path = kubeapi.object_path(desired["kind"], meta["namespace"], meta["name"])
    existing = kubeapi.request(api, "GET", path)
    have_meta = existing.get("metadata") or {}
    body = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind", "metadata")}
    wanted_meta = {k: meta[k] for k in ("labels", "annotations")}
    if kubeapi.subset(body, existing) and kubeapi.subset(wanted_meta, have_meta):
        return existing
    replacement = {**desired, "metadata": {**meta, "resourceVersion": have_meta.get("resourceVersion")}}
    return kubeapi.request(api, "PUT", path, replacement)


def _ensure_dns_service(api: k8s.ApiClient, desired: Obj) -> None:
    """createDNSService: create; on AlreadyExists or Invalid (the IP is already allocated to the
    existing Service) update it."""
    path = kubeapi.object_path("Service", coredns.NAMESPACE)

    def create() -> Obj:
        try:
            return kubeapi.request(api, "POST", path, desired)
        except kubeapi.ApiException as e:
            if e.status == 422:
                raise kubeapi.ApiException(status=409, reason=f"Invalid, updating instead: {e.reason}") from e
            raise

    kubeapi.create_or_update(create, lambda: _update_if_changed(api, desired),
                             "unable to create/update the DNS service")


def run_addon_coredns(ctx: ControlContext) -> None:
    cfg = ctx.cfg
    if cfg.cluster.dns.disabled:
        ctx.log("addons", "Skipping the CoreDNS addon: dns.disabled is true")
        return
    api = _api(ctx)
    replicas = deployed_replicas(api)
    deployment = coredns.deployment(cfg, replicas)
    if cfg.patches_dir:
        deployment = coredns.patch_deployment(deployment, Path(cfg.patches_dir), ctx.out)
    _ensure_corefile(api, coredns.config_map(cfg))
    kubeapi.ensure(api, coredns.cluster_role())
    kubeapi.ensure(api, coredns.cluster_role_binding())
    kubeapi.ensure(api, coredns.service_account())
    kubeapi.ensure(api, deployment)
    _ensure_dns_service(api, coredns.service(cfg))
    ctx.log("addons", "Applied essential addon: CoreDNS")


# --- kube-proxy ----------------------------------------------------------------------------------------

def run_addon_kube_proxy(ctx: ControlContext) -> None:
    cfg = ctx.cfg
    if cfg.cluster.proxy.disabled:
        ctx.log("addons", "Skipping the kube-proxy addon: proxy.disabled is true")
        return
    api = _api(ctx)
    kubeapi.ensure(api, kubeproxy.config_map(cfg))
    kubeapi.ensure(api, kubeproxy.daemon_set(cfg, os.environ))
    kubeapi.ensure(api, kubeproxy.service_account(), "error when creating kube-proxy service account")
    kubeapi.ensure(api, kubeproxy.cluster_role_binding())
    kubeapi.ensure(api, kubeproxy.role())
    kubeapi.ensure(api, kubeproxy.role_binding())
    ctx.log("addons", "Applied essential addon: kube-proxy")
