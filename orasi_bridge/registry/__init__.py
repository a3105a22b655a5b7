"""The bridge's schema registry: the Confluent Schema Registry's REST API over JSON Schemas of
lake rows (ARCHITECTURE §6). ``schema`` is the model and the subset, ``compatibility`` the levels."""
