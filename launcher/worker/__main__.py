"""`python -m launcher.worker --args-file RESOLVED_CONFIG_JSON`: one rank of a `dpo-launch train` job."""

import sys

from launcher.worker.main import exit_after_success, main

exit_code = main()
if exit_code == 0:
    exit_after_success()
sys.exit(exit_code)  # failures keep the normal teardown: any pending log write still lands
