"""The ``modelrecovery`` command line.

- :mod:`~modelrecovery.cli.parser`: every subcommand's arguments (choices and defaults
  from the study's vocabulary, :mod:`modelrecovery.study.spec`) and its ``handler``;
- :mod:`~modelrecovery.cli.commands`: one function per subcommand, which imports its
  stage module when the command runs: ``--help`` and argument errors never import torch,
  MLflow or Lightning;
- :mod:`~modelrecovery.cli.signals`: SIGTERM / SIGINT while a command runs;
- :mod:`~modelrecovery.cli.entry`: :func:`main` and the console script :func:`console`.

Exit codes: 0 done; 2 bad input (one line naming the file, row, option or setting and what
was expected); 1 an unexpected error (one line; ``--traceback`` shows it whole); 130 / 143
interrupted by SIGINT / SIGTERM (one line; the open MLflow runs end FAILED, nothing is
recorded as finished). Commands that track check their stores first (see
:mod:`modelrecovery.store_checks`).
"""

from __future__ import annotations

from modelrecovery.cli.commands import cmd_evaluate, cmd_noise_ceiling, cmd_stack
from modelrecovery.cli.entry import console, format_value, main
from modelrecovery.cli.parser import PROG, build_parser, check_args, subcommands
from modelrecovery.cli.signals import STOP_SECONDS, _Signals

__all__ = [
    "PROG",
    "STOP_SECONDS",
    "_Signals",
    "build_parser",
    "check_args",
    "cmd_evaluate",
    "cmd_noise_ceiling",
    "cmd_stack",
    "console",
    "format_value",
    "main",
    "subcommands",
]
