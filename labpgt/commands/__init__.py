"""The ``labpgt`` subcommands, one module per command or group of commands that share their arguments.

Each module adds its commands' parsers (``add_*``: arguments, help, the ``run`` function they are wired to) and
runs them (``run_*``). What a command does lives in the module that owns it (the run engine, the benchmark,
inspection, export, replay, the simulated instruments): a command's modules are imported only when it runs, so
that ``labpgt --help`` stays quick. The parser and the process's exit status are :mod:`labpgt.cli`'s.
"""
