import sys

from wslgraph.cli import main

sys.exit(main())
