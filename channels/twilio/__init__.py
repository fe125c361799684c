"""Twilio: SMS (Messages API) and voice (Calls API), with signed webhooks."""
