#!/usr/bin/python3
"""CLI test of eds-validate: runs the binary on the protocol spec's example
records and on edge cases, and checks the exact output and exit status.

usage: test_eds_validate.py PATH/TO/eds-validate PATH/TO/schemas/energy.json
"""
import os
import subprocess
import sys
import tempfile

EXE, SCHEMA = sys.argv[1], sys.argv[2]

# The protocol spec's example session: seq 42's data is valid, seq 43's is not.
SEQ42 = '{"timestamp":"2026-11-24T10:00:00Z","day-ahead-price":81.4,"power_factor":0.97}'
SEQ43 = '{"timestamp":"2026-11-24T10:00:01Z","day-ahead-price":-3,"power_factor":1.2}'
SEQ43_ERRORS = ('{"day-ahead-price":["min value is 0.0"],'
                '"power_factor":["must be between 0.0 and 1.0"]}')

failures = []


def run(args, stdin=b""):
    p = subprocess.run([EXE] + args, input=stdin, capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def expect(name, got, want):
    if got != want:
        failures.append(f"{name}:\n  expected {want!r}\n  got      {got!r}")


def check(name, args, stdin, want_out, want_rc):
    rc, out, err = run(args, stdin)
    expect(name + " (stdout)", out, want_out)
    expect(name + " (exit status)", rc, want_rc)
    return err


# --json on the spec's example, plus an empty line, a non-JSON line, JSON
# that is not an object, and CRLF endings.
check("json example",
      ["--json", SCHEMA],
      (SEQ42 + "\n" + SEQ43 + "\n\nnot json\n[1,2]\r\n" + SEQ42 + "\r\n").encode(),
      '{"line":1,"valid":true}\n'
      '{"line":2,"valid":false,"errors":' + SEQ43_ERRORS + '}\n'
      '{"line":4,"valid":false,"error":"bad_json"}\n'
      '{"line":5,"valid":false,"error":"bad_json"}\n'
      '{"line":6,"valid":true}\n',
      1)

# Plain output; every line valid exits 0; a last line without LF counts.
check("plain valid", [SCHEMA], (SEQ42 + "\n" + SEQ42).encode(), "1: ok\n2: ok\n", 0)
check("plain invalid", [SCHEMA], (SEQ43 + "\n{]\n").encode(),
      "1: invalid " + SEQ43_ERRORS + "\n2: invalid bad_json\n", 1)
check("no input", [SCHEMA], b"", "", 0)
check("only empty lines", [SCHEMA], b"\n\r\n\n", "", 0)

# A line over --max-line is reported once; numbering goes on after it.
long_line = '{"x":"' + "a" * 200 + '"}'
check("too long", ["--json", "--max-line", "100", SCHEMA],
      (SEQ42 + "\n" + long_line + "\n" + SEQ42 + "\n" + long_line).encode(),
      '{"line":1,"valid":true}\n'
      '{"line":2,"valid":false,"error":"line_too_long"}\n'
      '{"line":3,"valid":true}\n'
      '{"line":4,"valid":false,"error":"line_too_long"}\n',
      1)
check("too long plain", ["--max-line=100", SCHEMA], (long_line + "\n").encode(),
      "1: invalid line_too_long\n", 1)

# Files, and "-" for stdin, numbered as one stream.
with tempfile.TemporaryDirectory() as tmp:
    f1 = os.path.join(tmp, "a.ndjson")
    with open(f1, "w") as f:
        f.write(SEQ42 + "\n\n" + SEQ43)  # no final LF
    check("files and stdin", ["--json", SCHEMA, f1, "-"], (SEQ42 + "\n").encode(),
          '{"line":1,"valid":true}\n'
          '{"line":3,"valid":false,"errors":' + SEQ43_ERRORS + '}\n'
          '{"line":4,"valid":true}\n',
          1)
    err = check("missing input file", [SCHEMA, os.path.join(tmp, "nope")], b"", "", 2)
    expect("missing input file (stderr)", "nope" in err, True)

    bad = os.path.join(tmp, "bad.json")
    with open(bad, "w") as f:
        f.write('{"meter": {"type": "dict", "schema": {"phase": {"min": "x"}}}}\n')
    err = check("bad schema", [bad], SEQ42.encode(), "", 2)
    expect("bad schema (stderr)", err,
           f"eds-validate: {bad}: field 'meter.phase': rule 'min': expected a number\n")

err = check("missing schema", ["/nonexistent/s.json"], b"", "", 2)
expect("missing schema (stderr)", "/nonexistent/s.json: cannot open" in err, True)
check("no arguments", [], b"", "", 2)
check("unknown option", ["--frobnicate", SCHEMA], b"", "", 2)
check("bad --max-line", ["--max-line", "x", SCHEMA], b"", "", 2)
rc, out, err = run(["--help"])
expect("help (exit status)", rc, 0)
expect("help mentions usage and an example", "usage: eds-validate" in out and "Example" in out,
       True)

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("eds-validate CLI: all checks passed")
