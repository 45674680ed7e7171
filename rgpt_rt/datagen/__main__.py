import sys

from ..data.captions.cli import main

sys.exit(main())
