#!/usr/bin/env python3
"""yaml2json.py IN.yaml OUT.json: the build's conversion of docs/openapi.yaml to the JSON the
daemon serves at /v1/openapi.json (python3 + PyYAML, Debian's python3-yaml).

Stricter than a plain yaml.safe_load, so a slip in the hand-written document breaks the
build instead of changing what is served: a key given twice is an error (PyYAML would keep
the last), and so is a value JSON cannot hold (an unquoted date becomes a datetime)."""
import json
import sys

import yaml


class StrictLoader(yaml.SafeLoader):
    pass


def construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % (key,), key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: yaml2json.py IN.yaml OUT.json")
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = yaml.load(f, Loader=StrictLoader)
    text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
