from shrinkbench.cli.main import main

raise SystemExit(main())
