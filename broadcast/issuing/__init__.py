"""Issuing: the alert's record (composed, approved by a second officer, issued, cancelled or
replaced, every action audited) and its plan (the roster frozen once, cut into batches, each
queued once).

May import ``composing``, ``audiences``, ``channels`` and ``core``; no later stage.
"""
