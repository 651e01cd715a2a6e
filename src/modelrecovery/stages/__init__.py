"""Pipeline stages (world, extract, fit, tune, calibrate, generators, simulate, recover,
analyze): thin functions that call the libraries and log to MLflow. Each module exposes
``register(subparsers)`` for the ``modelrecovery`` command line."""
