"""``python -m modelrecovery.cli``: the ``modelrecovery`` console script."""

from modelrecovery.cli.main import console

console()
