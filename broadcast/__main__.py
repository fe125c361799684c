import sys

from broadcast.cli import main

sys.exit(main())
