import sys

from multimodal.cli.main import main

sys.exit(main())
