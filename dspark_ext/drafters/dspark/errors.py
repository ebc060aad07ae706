"""Errors raised for bad drafter configs and checkpoints (both are ValueErrors, so callers that
catch ValueError keep working)."""


class ConfigError(ValueError):
    """A drafter config field is missing or invalid; the message names the field."""


class CheckpointError(ValueError):
    """A checkpoint's tensors do not match the config; the message names the tensors."""
