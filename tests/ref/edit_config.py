#!/usr/bin/python3
"""edit_config.py - edit a model's config.json in place for the cross-check cases
(the weights stay the same; only the math the config selects changes).

  KEY=JSON            set a (dotted) key, e.g. rope_scaling.original_max_position_embeddings=32
  --del KEY           delete a (dotted) key
  --rope-parameters   move rope_theta + rope_scaling into the transformers-v5 spelling
                      rope_parameters {rope_theta, rope_type, factor, ...}
Edits apply in command-line order. Exit 0 ok, 1 error.

Usage: edit_config.py MODEL_DIR [KEY=JSON | --del KEY | --rope-parameters] ...
"""
import json
import os
import sys


def _walk(c, key, create):
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(c.get(p), dict):
            if not create:
                raise KeyError(key)
            c[p] = {}
        c = c[p]
    return c, parts[-1]


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 1
    path = os.path.join(argv[0], "config.json")
    try:
        with open(path) as f:
            c = json.load(f)
        i = 1
        while i < len(argv):
            a = argv[i]
            if a == "--del":
                d, k = _walk(c, argv[i + 1], False)
                d.pop(k)
                i += 2
                continue
            if a == "--rope-parameters":
                rs = dict(c.pop("rope_scaling"))
                rs["rope_type"] = rs.pop("type", rs.get("rope_type"))
                rs["rope_theta"] = c.pop("rope_theta")
                c["rope_parameters"] = rs
            else:
                k, _, v = a.partition("=")
                d, k = _walk(c, k, True)
                d[k] = json.loads(v)
            i += 1
        with open(path, "w") as f:
            json.dump(c, f, indent=2)
    except (OSError, ValueError, KeyError, IndexError) as e:
        print("edit_config: %s: %s" % (path, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
