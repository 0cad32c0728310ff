import sys

from cotprobe.cli import main

sys.exit(main())
