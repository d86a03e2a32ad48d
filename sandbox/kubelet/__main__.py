"""``python -m sandbox.kubelet``: the sandbox kubelet daemon of one node (see ``daemon``)."""

from sandbox.kubelet.daemon import main

raise SystemExit(main())
