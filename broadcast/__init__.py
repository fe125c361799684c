"""The warning broadcast service. Its folders follow an alert's life, each importing only the ones
listed after it (``make lint-imports`` checks):

running → web → lifecycle → following → hearing → delivering → issuing → composing →
audiences | channels → core
"""
