"""Subcommands of the ``kronos`` command line (see :mod:`kronos.cli`)."""
