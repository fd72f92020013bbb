"""rshub: the consortium-wide interlibrary loan hub (state machine, directory, Kafka wiring)."""
