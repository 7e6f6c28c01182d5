from mlship.cli import main

raise SystemExit(main())
