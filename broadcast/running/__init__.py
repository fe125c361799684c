"""Running the service: the command line, the demo, the workers and their watchdog, the services
the demo and tests start (simulators, web app), and the benchmarks.

May import everything; nothing imports it.
"""
