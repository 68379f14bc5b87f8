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

then open http://127.0.0.1:8000/ (the page), /docs (OpenAPI), or:
  curl -s localhost:8000/v1/forecast -F file=@prices.csv -F pred_len=10 -F samples=20
  curl -s localhost:8000/v1/forecast -H 'content-type: application/json' \\
       -d '{"bars": [{"timestamp": "2024-01-02", "open": 1, "high": 2, "low": 0.5, "close": 1.5}, ...],
            "pred_len": 5}'
"""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the forecasting web service and page", epilog=SERVE_EXAMPLES,
        description="Serve POST /v1/forecast (JSON bars or a CSV upload), GET /healthz, GET /v1/model, "
                    "the OpenAPI docs at /docs and a forecasting page at /. The model is loaded once.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    add_model_arguments(parser)
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
    parser.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                        help="uvicorn log level (default warning)")
    parser.set_defaults(func=run)


def limits_from_args(args: argparse.Namespace):
    from ..service.serving import ServiceLimits

    if not args.max_body_mb > 0 or not args.timeout > 0:
        raise UsageError(f"--max-body-mb and --timeout must be > 0, got {args.max_body_mb} and {args.timeout}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    return ServiceLimits(max_body_bytes=int(args.max_body_mb * 2**20), max_rows=args.max_rows,
                         max_pred_len=args.max_pred_len, max_samples=args.max_samples,
                         request_timeout_s=args.timeout, max_queue=args.max_queue, max_batch_series=args.max_batch,
                         max_batch_paths=args.max_batch_paths)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..service.app import create_app
    except ImportError as exc:
        raise UsageError(f"the service needs {exc.name}: pip install 'kronos-kline[serve,plot]'") from exc
    limits = limits_from_args(args)
    predictor = load_predictor(args)
    info = model_summary(predictor, args.model, args.tokenizer)
    app = create_app(predictor, limits, model_name=args.model, model_info=info)
    if args.host not in LOOPBACK:
        print(f"kronos serve: warning: listening on {args.host}; the service has no authentication",
              file=sys.stderr)
    print(f"kronos: serving {args.model} on http://{args.host}:{args.port}/ (docs at /docs); Ctrl-C stops",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_keep_alive=5,
                limit_concurrency=max(64, limits.max_queue + 32))
    return 0
