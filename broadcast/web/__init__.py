"""The web app: the JSON API, provider webhooks, the duty officers' console, residents' and
volunteers' pages (``pages/``), and the OpenAPI document. ``base`` holds what the app and every
route module share (the app's keys, the JSON error, reading a body).

May import ``lifecycle`` and every stage; not ``running``.
"""
