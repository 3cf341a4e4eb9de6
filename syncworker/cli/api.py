"""``syncworker api -c FILE [--listen HOST:PORT] [--ssl-certfile F --ssl-keyfile F]``: serve
registry webhooks and sync requests over HTTP (uvicorn), next to the workers.

Stateless: run as many as you like behind one address. The bearer token comes from
``SYNCWORKER_API_TOKEN``, else ``syncworker.api.token`` in the config; without one the
command refuses to start. With ``--ssl-certfile``/``--ssl-keyfile`` it serves HTTPS itself;
behind a TLS-terminating proxy, leave them out.
"""

from __future__ import annotations

import argparse
import os
import ssl
from typing import Any

import uvicorn

from syncworker.api.app import build_api
from syncworker.api.dispatch import Dispatcher
from syncworker.celeryapp import sending_app
from syncworker.cli.status import RUN_STATE
from syncworker.config import Config, load_config
from syncworker.config.model import MIN_TOKEN_CHARS
from syncworker.config.serving import listen_address
from syncworker.errors import ConfigError
from syncworker.runtime import Runtime

__all__ = ["TOKEN_ENV", "add_parser", "api_token", "run"]

TOKEN_ENV = "SYNCWORKER_API_TOKEN"
DEFAULT_LISTEN = "127.0.0.1:8080"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("api", help="serve registry webhooks and sync requests")
    parser.add_argument("-c", "--config", required=True, help="YAML or JSON config file")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"address to serve on (default {DEFAULT_LISTEN})")  # fmt: skip
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    parser.add_argument("--ssl-ca-certs", help="require client certificates signed by this CA")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    token = api_token(config)
    host, port = listen_address(args.listen)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ConfigError("--ssl-certfile", "HTTPS needs both --ssl-certfile and --ssl-keyfile")
    # Redis for the server's lifetime: its requests record runs through the Coordinator.
    with Runtime.open(config, upto="redis", redis=RUN_STATE) as runtime:
        dispatcher = Dispatcher(config, sending_app(config), runtime.coordinator)
        uvicorn.run(
            build_api(dispatcher, token),
            host=host,
            port=port,
            log_config=None,  # our logging (-v), set up by the syncworker command
            server_header=False,
            **_tls(args),
        )
    return 0


def api_token(config: Config) -> str:
    """The bearer token: the environment's, else the config's (surrounding whitespace, such
    as a Secret file's newline, removed)."""
    configured = config.syncworker.api.token
    token = os.environ.get(TOKEN_ENV) or (configured.get_secret_value() if configured else "")
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS:
        state = "is shorter than" if token else "is not set; it needs at least"
        reason = f"the API token ({TOKEN_ENV}) {state} {MIN_TOKEN_CHARS} characters"
        raise ConfigError("syncworker.api.token", reason)
    return token


def _tls(args: argparse.Namespace) -> dict[str, Any]:
    if not args.ssl_certfile:
        return {}
    options: dict[str, Any] = {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile}
    if args.ssl_ca_certs:
        options.update(ssl_ca_certs=args.ssl_ca_certs, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options
