"""Loaded by every Python process of the real-Bridge tier (run.sh puts this folder on PYTHONPATH)."""

import standins

standins.install()
