"""Following up: the escalation ladder (calls, volunteers' lists, community roll-ups), help cases,
what volunteers record at the door, and the progress counted from it all.

May import every earlier stage (``hearing``, ``delivering``, ``issuing``, ``composing``),
``audiences``, ``channels`` and ``core``; not ``lifecycle``, ``web`` or ``running``.
"""
