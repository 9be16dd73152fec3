#!/usr/bin/python3
"""Differential test: eds-validate against Cerberus itself.

Validates a few thousand generated records with three schemas that use
every rule Cerberus also has, once with eds-validate --json and once with
Cerberus (python3-cerberus), and compares the error dicts exactly: keys,
order, message texts. Exits 77 (skipped) when Cerberus is not installed.

What is left out on purpose, because the EDS dialect differs there (see
docs/schema.md): booleans where numbers are checked, integral floats such
as 1.0, regexes whose meaning changes with whole-string matching, and the
`format` rule (not a Cerberus rule). Cerberus reports `forbidden` items in
set order, so those lists are compared as sets.

usage: diff_cerberus.py PATH/TO/eds-validate [records-per-schema]
"""
import copy
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable

try:
    import cerberus
    from cerberus import errors as cerrors
except ImportError:
    print("python3-cerberus is not installed: skipped")
    sys.exit(77)

EXE = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 700


class Validator(cerberus.Validator):
    def _validate_between(self, between, field, value):
        """{'type': 'list'}"""
        # The seed's custom rule, written the usual way for a Cerberus custom rule.
        if (isinstance(value, (int, float)) and not isinstance(value, bool)
                and not between[0] <= value <= between[1]):
            self._error(field, "must be between %r and %r" % (between[0], between[1]))

    def _validate_allowed(self, allowed_values, field, value):
        """{'type': 'container'}"""
        # Cerberus 1.3.8's version; Debian's 1.3.2 reports a set in any order.
        if isinstance(value, Iterable) and not isinstance(value, str):
            unallowed = tuple(x for x in value if x not in allowed_values)
            if unallowed:
                self._error(field, cerrors.UNALLOWED_VALUES, unallowed)
        elif value not in allowed_values:
            self._error(field, cerrors.UNALLOWED_VALUE, value)


SCHEMAS = [
    {"s": {"type": "string", "minlength": 2, "maxlength": 4, "regex": "[a-z]+",
           "allowed": ["ab", "abc", "x", "ABCDE"]},
     "n": {"type": "float", "min": 0.0, "max": 10, "between": [1, 5.5]},
     "i": {"type": "integer", "required": True, "nullable": True, "forbidden": [3, 4]},
     "l": {"type": "list", "empty": False, "maxlength": 3, "allowed": ["a", "b", 1],
           "schema": {"type": "string"}},
     "d": {"type": "dict", "schema": {"x": {"type": "integer", "required": True},
                                      "y": {"type": "string", "empty": False}}},
     "e": {"type": ["string", "list"], "empty": True, "minlength": 3, "forbidden": ["bad"]},
     "u": {"type": "dict", "allow_unknown": False, "schema": {"k": {"type": "number", "min": -1}}}},
    {"t": {"type": "list", "minlength": 2,
           "schema": {"type": "dict", "schema": {"a": {"type": "integer", "max": 5},
                                                 "b": {"required": True}}}},
     "m": {"type": ["number", "string"], "min": 5, "maxlength": 2},
     "z": {"nullable": False},
     "A": {"type": "boolean"},
     "q": {"type": "dict", "schema": {"r": {"type": "dict", "schema": {
         "s": {"type": "list", "schema": {"type": "integer", "min": 0}}}}}}},
    {"$allow_unknown": False,
     "a": {"type": "float", "allowed": [1, 2.5, 7], "between": [0, 5], "max": 6.0},
     "b": {"type": "dict", "empty": False, "schema": {"x": {"type": "integer", "nullable": True,
                                                            "min": 1}, "y": {}}},
     "c": {"type": "dict", "allow_unknown": True, "schema": {"a": {"type": "integer"}}},
     "t": {"type": "list", "schema": {"type": "dict", "schema": {"a": {"type": "integer",
                                                                       "max": 5}}}},
     "f": {"forbidden": ["x", 7, "ab"], "minlength": 2},
     "g": {"schema": {"x": {"type": "integer", "required": True}}},
     "h": {"type": "list", "schema": {"type": "list", "maxlength": 1,
                                      "schema": {"type": "integer"}}}},
]

POOL = [None, 0, 1, 2, 3, 4, 5, 6, 7, 11, -2, 0.5, 2.5, 12.75, -0.5, "", "a", "ab", "abc",
        "ABCDE", "x", "bad", "toolong", "A1", "\u00e9t\u00e9",
        [], ["a"], ["a", "b"], ["a", "c", 1], [1, 2, 3, 4], [-1, 2], ["bad", "x", "y"],
        ["x", "ab"], {}, {"x": 1}, {"x": "1", "y": ""}, {"k": -3, "j": 1}, {"a": 1, "b": 2},
        [{"a": 1, "b": 1}, {"a": 9}], [{"b": None}, {"a": "x", "b": 1, "c": 2}],
        {"r": {"s": [1, -1, "x"]}}, {"r": {"s": "no"}}, {"r": []}, [[1], [1, 2], ["x"]], [[]],
        {"a": "x", "z": 1}, {"x": None, "y": 1}, {"x": 0}]
BOOLEAN_POOL = [True, False, 1, "x", None]

FORBIDDEN_LIST = re.compile(r"^unallowed values \[(.*)\]$")


def normalize(tree):
    """Cerberus lists forbidden items from a set: compare those as sets."""
    if isinstance(tree, dict):
        return {k: normalize(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [normalize(v) for v in tree]
    if isinstance(tree, str):
        m = FORBIDDEN_LIST.match(tree)
        if m:
            return "unallowed values {" + ", ".join(sorted(m.group(1).split(", "))) + "}"
    return tree


def main():
    rng = random.Random(20261124)
    compared = mismatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        for schema in SCHEMAS:
            path = os.path.join(tmp, "schema.json")
            with open(path, "w") as f:
                json.dump(schema, f)
            rules = copy.deepcopy(schema)
            allow_unknown = rules.pop("$allow_unknown", True)
            v = Validator(rules, allow_unknown=allow_unknown)
            docs = []
            for _ in range(N):
                doc = {}
                for field in list(schema) + ["extra"]:
                    if field != "$allow_unknown" and rng.random() < 0.8:
                        doc[field] = copy.deepcopy(rng.choice(BOOLEAN_POOL if field == "A" else POOL))
                docs.append(doc)
            text = "".join(json.dumps(d) + "\n" for d in docs)
            p = subprocess.run([EXE, "--json", path], input=text.encode(), capture_output=True,
                               timeout=120)
            lines = p.stdout.decode().splitlines()
            if len(lines) != len(docs) or p.returncode not in (0, 1):
                print(f"eds-validate exited {p.returncode} with {len(lines)} lines: "
                      f"{p.stderr.decode()}")
                return 1
            for doc, line in zip(docs, lines):
                try:
                    v.validate(doc)
                except (TypeError, RuntimeError):
                    # Cerberus cannot hash a dict inside a list for `forbidden`, nor
                    # apply a field mapping given without a type to a list.
                    continue
                want = normalize(v.errors)
                verdict = json.loads(line)
                got = normalize(verdict.get("errors", {}))
                compared += 1
                if json.dumps(got) != json.dumps(want):
                    mismatches += 1
                    if mismatches <= 10:
                        print(f"record   {json.dumps(doc)}\ncerberus {json.dumps(want)}\n"
                              f"eds      {json.dumps(got)}\n")
    print(f"{compared} records compared with Cerberus {cerberus.__version__}: "
          f"{mismatches} differ")
    return 1 if mismatches or compared < N else 0


sys.exit(main())
