from dlcamp.cli import main

raise SystemExit(main())
