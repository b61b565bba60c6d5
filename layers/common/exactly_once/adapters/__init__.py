"""Provider adapters: how each provider handshakes, authenticates, splits and keys its webhooks."""
