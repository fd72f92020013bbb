"""python -m hub.cli"""

from hub.cli import main

raise SystemExit(main())
