"""`python -m qwen_tui` is `qwen-tui`."""

from qwen_tui.cli import main

raise SystemExit(main())
