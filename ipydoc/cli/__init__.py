"""The `ipydoc` command line: parser, control-channel client, output, handlers."""
