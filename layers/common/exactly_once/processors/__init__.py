"""One module per provider flow: turns a settled event into its effect, exactly once."""
