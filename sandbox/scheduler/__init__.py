"""The sandbox's emulated kube-scheduler: its secure health endpoints only (a sandbox has no pods to
place; static pods are the kubelet's)."""
