"""daskhub-e2e: the staged checks' plugin lives in fixtures/plugin.py."""

pytest_plugins = ["fixtures.plugin", "fixtures.run_state"]
