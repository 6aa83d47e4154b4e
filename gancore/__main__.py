from gancore.cli import main

raise SystemExit(main())
