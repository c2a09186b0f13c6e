import sys

from vallum.cli import main

sys.exit(main())
