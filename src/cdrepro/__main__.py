import sys

from cdrepro.cli import main

sys.exit(main())
