"""The city-scale benchmarks behind ``broadcast bench`` (``make bench``).

Each one measures a real path (our plan job, our channel code through the twilio client, our Lua,
our web app) against one seeded Redis, beside a baseline measured in the same run, and returns
its figures for ``bench/results/{name}.json``. Providers are simulated in processes of their own,
workers and the web app run as the real ``broadcast`` commands; every process a benchmark starts
is stopped when it ends, also when it fails.
"""
