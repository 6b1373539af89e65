"""``python3 -m covnet SCRIPT NAME``: runs a test script for covnet."""

import sys

from covnet import _main

if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
