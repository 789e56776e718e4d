from warnd.cli import main

raise SystemExit(main())
