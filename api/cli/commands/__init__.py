"""One module per subcommand; each exposes ``COMMANDS`` (a list of click commands)."""
