from mkimage.cli import main

raise SystemExit(main())
