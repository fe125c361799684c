"""What every layer stands on: the domain models, settings, Redis key names, the clock, signed
tokens, the context (Redis, queues), job names and leases, SMS encoding, and the embedded Redis
and MQTT broker started when none is configured.

Imports nothing of the service: not ``audiences``, not ``channels``, no stage.
"""
