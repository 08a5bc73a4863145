"""Pure logic: values in, decisions out. No I/O, no clients, no clocks read
here (callers pass ``now``), so every decision is testable without a server.
"""
