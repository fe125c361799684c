import sys

from broadcast.running.cli import main

sys.exit(main())
