"""The sandbox kubelet: runs a sandbox node's static Pods as local processes, serves /healthz, registers
the node with its API server (TLS bootstrap included). ``driver.SandboxKubelet`` is the kubelet driver
kubeboot's node worker uses for ``--kubelet sandbox``; ``python -m kubeboot.sandbox.kubelet`` is the daemon."""
