"""The sandbox's emulated kube-controller-manager: the controllers kubeadm relies on (bootstrap signer,
token cleaner, CSR approver and signer, owner-reference garbage collection) and its health endpoints."""
