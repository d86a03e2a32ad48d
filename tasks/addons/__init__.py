"""The objects of kubeadm's essential addons (kubeadm-spec 2.13), built as dicts from kubeadm's templates.

``coredns``: cmd/kubeadm/app/phases/addons/dns (manifests.go, dns.go); ``kubeproxy``:
cmd/kubeadm/app/phases/addons/proxy (manifests.go, proxy.go) and componentconfigs/kubeproxy.go.
Pure: no API access here; ``tasks.phases.addons`` writes the objects.
"""
