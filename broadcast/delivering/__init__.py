"""Delivering: sending the batches (rendered once per language and committee, paced by the
shared rate limit, each outcome recorded in the ledger, failures moved to the next channel) and
putting the warning on building screens.

May import ``issuing``, ``composing``, ``audiences``, ``channels`` and ``core``; no later stage.
"""
