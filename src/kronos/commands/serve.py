"""``kronos serve``: the forecasting web service (FastAPI on uvicorn) with its browser page."""

from __future__ import annotations

import argparse
import sys

from .common import UsageError, add_model_arguments, load_predictor, model_summary, positive_int

SERVE_EXAMPLES = """\
examples:
  kronos serve                                   # bundled model on http://127.0.0.1:8000
  kronos serve --port 9000 --model ./my-model --tokenizer ./my-tokenizer --max-context 256
  kronos serve --max-pred-len 64 --max-samples 32 --timeout 30 --max-body-mb 2

then open http://127.0.0.1:8000/ (the page), /docs (the API), or:
  curl -s localhost:8000/v1/forecast -H 'X-Kronos-Client: curl' -F file=@prices.csv -F pred_len=10 -F samples=20
  curl -s localhost:8000/v1/forecast -H 'content-type: application/json' \\
       -d '{"bars": [{"timestamp": "2024-01-02", "open": 1, "high": 2, "low": 0.5, "close": 1.5}, ...],
            "pred_len": 5}'
"""

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_WORK = 400_000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the forecasting web service and page", epilog=SERVE_EXAMPLES,
        description="Serve POST /v1/forecast (JSON bars or a CSV upload), GET /healthz, GET /v1/model, "
                    "the OpenAPI docs at /docs and a forecasting page at /. The model is loaded once.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    add_model_arguments(parser, backend=False)
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body, MiB (default 8)")
    limits.add_argument("--max-rows", type=positive_int, default=20_000, help="most bars per request (default 20000)")
    limits.add_argument("--max-pred-len", type=positive_int, default=512, help="largest pred_len (default 512)")
    limits.add_argument("--max-samples", type=positive_int, default=100, help="most sample paths (default 100)")
    limits.add_argument("--timeout", type=float, default=120.0,
                        help="seconds a request may wait for the model before a 503 (default 120)")
    limits.add_argument("--max-queue", type=positive_int, default=512,
                        help="requests waiting for the model before new ones get 429 (default 512)")
    limits.add_argument("--max-batch", type=positive_int, default=16,
                        help="most requests batched into one model call (default 16; 1 = no batching)")
    limits.add_argument("--max-batch-paths", type=positive_int, default=1024,
                        help="most sample paths (summed over requests) in one model call (default 1024)")
    limits.add_argument("--max-work", type=positive_int, default=MAX_WORK,
                        help="most token work per request: pred_len x (samples + 16 per calibration origin) plus "
                             f"history and window terms (docs/cli-and-service.md; default {MAX_WORK}); larger "
                             "requests get a 422 naming the limit")
    limits.add_argument("--max-connections", type=positive_int, default=640,
                        help="open connections; past it the oldest idle or half-open ones are closed (default 640)")
    limits.add_argument("--header-timeout", type=float, default=10.0,
                        help="seconds a connection has to send its request head (default 10)")
    limits.add_argument("--body-timeout", type=float, default=30.0,
                        help="seconds a request has to send its body, else 408 (default 30)")
    limits.add_argument("--lenient", action="store_true",
                        help="repair inconsistent bars instead of refusing them (high/low widened to hold open and "
                             "close, rows with prices <= 0 dropped); the answer lists the repairs")
    browser = parser.add_argument_group("browser safety")
    browser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                         help="also accept requests whose Host header is NAME (repeatable; loopback names and the "
                              "--host address are always accepted; '*' accepts any)")
    browser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                         help="let pages from ORIGIN (e.g. https://example.com) call the API (repeatable; CORS "
                              "is off by default and cross-origin POSTs get a 403)")
    parser.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                        help="uvicorn log level (default warning)")
    parser.set_defaults(func=run)


def limits_from_args(args: argparse.Namespace):
    from ..service.serving import ServiceLimits

    for option in ("max_body_mb", "timeout", "header_timeout", "body_timeout"):
        value = getattr(args, option)
        if not 0 < value < 1e6:
            raise UsageError(f"--{option.replace('_', '-')} must be > 0 (and < 1e6), got {value}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    return ServiceLimits(max_body_bytes=int(args.max_body_mb * 2**20), max_rows=args.max_rows,
                         max_pred_len=args.max_pred_len, max_samples=args.max_samples,
                         request_timeout_s=args.timeout, max_queue=args.max_queue, max_batch_series=args.max_batch,
                         max_batch_paths=args.max_batch_paths, max_work=args.max_work,
                         max_connections=args.max_connections, header_timeout_s=args.header_timeout,
                         body_timeout_s=args.body_timeout, lenient=args.lenient)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..service.app import create_app
        from ..service.security import BrowserPolicy
        from ..service.server import uvicorn_config
    except ImportError as exc:
        raise UsageError(f"the service needs {exc.name}: pip install 'kronos-kline[serve,plot]'") from exc
    limits = limits_from_args(args)
    predictor = load_predictor(args)
    info = model_summary(predictor, args.model, args.tokenizer)
    policy = BrowserPolicy.for_bind(args.host, args.allowed_host, args.cors_origin)
    app = create_app(predictor, limits, model_name=args.model, model_info=info, policy=policy)
    if args.host not in LOOPBACK:
        print(f"kronos serve: warning: listening on {args.host}; the service has no authentication and no TLS: "
              "put a reverse proxy in front of it, and name the host clients use with --allowed-host",
              file=sys.stderr)
    print(f"kronos: serving {args.model} on http://{args.host}:{args.port}/ (docs at /docs); Ctrl-C stops",
          file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn_config(app, args.host, args.port, limits, args.log_level)).run()
    return 0
