#!/usr/bin/python3
"""eds-gateway's SIGHUP: reloads the schemas and the password file without dropping a
connection; a bad new file is refused and the old one kept."""

import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from gwrig import SCHEMA, GatewayTestCase, data_msg, hello, record  # noqa: E402

DEV = "myrio-01"
STRICT = """{
  "timestamp":       {"type": "string", "required": true, "format": "date-time"},
  "day-ahead-price": {"type": "float", "min": 0.0},
  "power_factor":    {"type": "float", "between": [0.9, 1.0]}
}
"""


class ReloadTest(GatewayTestCase):
    auto_rig = False

    def setUp(self):
        self.schema_dir = edsrig.tempfile.mkdtemp(prefix="eds-schema-")
        self.addCleanup(shutil.rmtree, self.schema_dir, True)
        self.schema = os.path.join(self.schema_dir, "energy.json")
        shutil.copy(SCHEMA, self.schema)
        self.start_rig(schema=self.schema)

    def write_schema(self, text):
        tmp = self.schema + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.schema)

    def test_changed_schema_takes_effect_without_dropping_the_connection(self):
        c, _ = self.session(DEV)
        r = record(1)
        r["power_factor"] = 0.5
        c.send_json(data_msg(1, r))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 1})
        self.write_schema(STRICT)
        self.gw.sighup(r"SIGHUP: schemas reloaded")
        r = record(2)
        r["power_factor"] = 0.5
        c.send_json(data_msg(2, r))  # the same connection
        self.assertEqual(c.recv_line(), b'{"type":"nack","seq":2,"errors":'
                         b'{"power_factor":["must be between 0.9 and 1.0"]}}')
        c.send_json(data_msg(3, record(3)))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 3})
        # A new connection gets the new schema too.
        c.close()
        c, _ = self.session(DEV)
        r = record(4)
        r["power_factor"] = 0.8
        c.send_json(data_msg(4, r))
        self.assertEqual(c.recv_json()["type"], "nack")

    def test_bad_schema_is_refused_and_the_old_one_kept(self):
        c, _ = self.session(DEV)
        for bad in ('{"power_factor": {"type": "float", "betwen": [0, 1]}}',  # unknown rule
                    '{"power_factor": ',                                      # not JSON
                    ):
            self.write_schema(bad)
            self.gw.sighup(r"SIGHUP: keeping the old schemas")
        os.unlink(self.schema)
        self.gw.sighup(r"SIGHUP: keeping the old schemas")
        # The old rules still apply, on the same connection.
        c.send_json(data_msg(1, {"timestamp": "2026-11-24T10:00:00Z", "power_factor": 1.5}))
        self.assertEqual(c.recv_line(), b'{"type":"nack","seq":1,"errors":'
                         b'{"power_factor":["must be between 0.0 and 1.0"]}}')
        c.send_json(data_msg(2, record(2)))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 2})
        self.assertTrue(self.gw.running())

    def test_password_file_reload(self):
        c, _ = self.session(DEV)
        edsrig.subprocess.run([edsrig.MOSQUITTO_PASSWD, "-b", self.gw.passwd_file, "myrio-new",
                               "fresh"], check=True, timeout=30)
        edsrig.subprocess.run([edsrig.MOSQUITTO_PASSWD, "-D", self.gw.passwd_file, "myrio-02"],
                              check=True, timeout=30)
        self.gw.sighup(r"SIGHUP: password file reloaded")
        n, w = self.session("myrio-new", "fresh")
        self.assertEqual(w["last_seq"], 0)
        gone = self.connect()
        gone.send_json(hello("myrio-02", "pw-02"))
        self.assertClosedWithError(gone, "auth_failed")
        # The connection made before the reload is still served.
        c.send_json({"type": "ping"})
        self.assertEqual(c.recv_line(), b'{"type":"pong"}')

    def test_bad_password_file_is_refused_and_the_old_one_kept(self):
        with open(self.gw.passwd_file, "w") as f:
            f.write("this line has no colon\n")
        self.gw.sighup(r"SIGHUP: keeping the old password file")
        c, _ = self.session(DEV)  # still the old credentials
        c.send_json({"type": "ping"})
        self.assertEqual(c.recv_line(), b'{"type":"pong"}')


if __name__ == "__main__":
    unittest.main()
