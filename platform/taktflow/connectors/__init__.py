"""Connectors: machine signals (Modbus TCP, MQTT) in, workflow events out."""
