"""`python -m imgproxy.image`: the one-off resize command (imgproxy.cli.resize)."""

import sys

from .cli.resize import main

if __name__ == "__main__":
    sys.exit(main())
