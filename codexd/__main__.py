from codexd.cli.daemon_main import main

raise SystemExit(main())
