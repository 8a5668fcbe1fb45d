"""``python -m calib.book --profile toy``: run the book's experiments, then its notebooks."""
import sys

from calib.book.runner import main

sys.exit(main())
