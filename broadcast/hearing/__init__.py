"""Hearing back: storing what providers and residents tell us (delivery reports, replies, key
presses, link and app confirmations, calls for help) before anyone is answered, and fetching the
reports of providers that do not call back.

May import ``delivering``, ``issuing``, ``composing``, ``audiences``, ``channels`` and ``core``;
no later stage.
"""
