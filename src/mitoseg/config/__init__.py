"""Config helpers: where the configs live, resolvers, and command-line override expansion."""

from mitoseg.config.overrides import expand_range_overrides, normalize_argv
from mitoseg.config.resolvers import register_resolvers

register_resolvers()

__all__ = ["expand_range_overrides", "normalize_argv", "register_resolvers"]
