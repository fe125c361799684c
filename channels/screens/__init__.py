"""Building and lift screens: MQTT (retained, QoS 1, one topic per screen) or an HTTP endpoint."""
