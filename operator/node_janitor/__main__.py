from node_janitor.cli import main

raise SystemExit(main())
