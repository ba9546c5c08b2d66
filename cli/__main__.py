import sys

from sagesnet_tf.cli.main import main

sys.exit(main())
