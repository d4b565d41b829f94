"""`python -m qwen_daemon` is `qwen-daemon`."""

import sys

from qwen_daemon.cli.main import main

sys.exit(main())
