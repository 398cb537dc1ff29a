"""trackcast service: configuration, sources, scheduling, MQTT/metrics outputs and the CLI."""
