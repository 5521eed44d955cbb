"""``python -m speechbrain_ext``: the access-control command line (:mod:`speechbrain_ext.access.cli`)."""
import sys

from speechbrain_ext.access.cli import main

if __name__ == "__main__":
    sys.exit(main())
