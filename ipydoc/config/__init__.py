"""The configuration file: loading, types, one module per section, ConfigError."""
