"""``python -m kubeboot.sandbox.controllermanager <kube-controller-manager flags>``."""

import sys

from kubeboot.sandbox.controllermanager.manager import main

sys.exit(main())
