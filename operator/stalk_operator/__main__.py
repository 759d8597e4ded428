"""``python -m stalk_operator``: run the operator with its settings from the environment."""

from __future__ import annotations

import logging
import secrets
import sys

import kopf

from stalk_operator import handlers  # noqa: F401 - registers the handlers
from stalk_operator.settings import OperatorSettings


def main() -> int:
    config = OperatorSettings.from_environ()
    # kopf's own log set-up for the whole process: one handler, one format.
    debug = config.log_level == "debug"
    kopf.configure(verbose=debug, debug=debug)
    logging.getLogger().setLevel(config.log_level.upper())
    if not debug:  # a line per API request or per watch event is noise; failures show
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz",
        peering_name=None if config.standalone else config.peering,
        priority=config.priority if config.priority is not None else secrets.randbelow(2**31),
        standalone=config.standalone,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
