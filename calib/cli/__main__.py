"""``python -m calib.cli ...``: the same as the ``calib`` command."""
import sys

from calib.cli import main

sys.exit(main())
