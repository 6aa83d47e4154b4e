"""Errors that every layer of gancore raises (families, data, trainer, CLI), kept below all of them."""


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""
