"""``python -m ipydoc.cli``: the same as the ``ipydoc`` command."""

from ipydoc.cli.main import main

raise SystemExit(main())
