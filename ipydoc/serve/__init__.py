"""Running the daemon: `ipydoc serve` (a supervisor that replaces its worker without dropping a connection) and the worker that runs the service without twistd plugin discovery."""
