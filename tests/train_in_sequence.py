"""``python -m aims_kit train`` for several regimes, one after the other, in one launch of processes.

``torchrun … tests/train_in_sequence.py ARGV_JSON`` runs each command line of the JSON list through
the CLI's own ``main`` in the same processes: the test of every regime under two processes then
pays for starting the processes (imports, process group) once instead of once per regime.
"""

import json
import sys

from aims_kit.__main__ import main

if __name__ == "__main__":
    for argv in json.loads(sys.argv[1]):
        code = main(argv)
        if code:
            sys.exit(code)
