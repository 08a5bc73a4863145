"""Model servers and load generators the tests, benches and the demo run as
pods in the sandbox (``python -m relearn_sandbox.servers.<name>``): real
modules, linted and type-checked like the rest, instead of programs inside
strings. Each exports Relearn's metric contract (:mod:`relearn.serving`)."""
