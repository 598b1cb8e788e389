"""Helpers shared by the tests (stores, specs, servers, kill-and-resume runs)."""
