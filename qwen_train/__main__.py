from qwen_train.cli import main

raise SystemExit(main())
