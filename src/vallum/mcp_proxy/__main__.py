"""`python -m vallum.mcp_proxy ...`: the `vallum mcp-proxy` command on its own."""

import sys

from vallum.mcp_proxy.cli import main

sys.exit(main())
