"""``python -m kubeboot.sandbox.kubelet``: the sandbox kubelet daemon of one node (see ``daemon``)."""

from kubeboot.sandbox.kubelet.daemon import main

raise SystemExit(main())
