import sys

from declip.cli.app import main

sys.exit(main())
