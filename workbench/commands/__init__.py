"""CLI subcommands, discovered by ``workbench.cli``. ``ORDER`` sets their order in ``--help``."""
ORDER = ["inspect", "run", "view", "surgery", "build", "profile", "compare", "report"]
