"""Agent runtime: inference backends, MQTT I/O, batching; the controller; message schemas."""
