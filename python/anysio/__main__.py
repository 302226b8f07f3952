"""``python -m anysio run module:attr``: the ``anysio`` command."""

from .cli import main

raise SystemExit(main())
