"""qwen_tui: a Textual dashboard, a client of the daemon's API."""

__version__ = "0.1.0"
