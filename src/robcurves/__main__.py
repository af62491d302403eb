import sys

from robcurves.cli import main

sys.exit(main())
