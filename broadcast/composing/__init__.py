"""Composing: the catalogue of events, the message layouts, rendering (pure: alert, language,
channel, area facts → text), each channel's shape (SMS parts, push bytes, screen pages), the
preview an officer sees and the checks of a deployment's own templates.

May import ``broadcast.core``, ``audiences`` and ``channels``; no later stage.
"""
