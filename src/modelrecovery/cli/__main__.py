"""``python -m modelrecovery.cli``: the ``modelrecovery`` console script."""

from modelrecovery.cli.entry import console

console()
