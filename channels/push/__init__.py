"""App push: JPush (REST v3) and Firebase Cloud Messaging (HTTP v1)."""
