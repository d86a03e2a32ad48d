"""``python -m sandbox.controllermanager <kube-controller-manager flags>``."""

import sys

from sandbox.controllermanager.manager import main

sys.exit(main())
