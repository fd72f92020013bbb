"""python -m hub.cli"""

from hub.cli.commands import main

raise SystemExit(main())
