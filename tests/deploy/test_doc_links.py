"""The README and the deployment guides link only to files that exist, and
every script, file or folder they tell the reader to run or open (written
as `scripts/...`, `deploy/...`, `docker/...`, `broker-config/...`,
`schemas/...`, `docs/...`) is in the repository."""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from edsrig import source_path  # noqa: E402

DOCS = ["README.md", "CONTRIBUTING.md", "docs/getting-started.md", "docs/operations.md"]
REPO_PATH = re.compile(r"(?<![\w/.~-])((?:scripts|deploy|docker|broker-config|schemas|docs|cmake)"
                       r"/[\w.-]+(?:/[\w.-]+)*)")


class DocLinks(unittest.TestCase):
    def test_links_and_paths_exist(self):
        for doc in DOCS:
            path = source_path(doc)
            with open(path) as f:
                text = f.read()
            base = os.path.dirname(path)
            with self.subTest(doc=doc):
                links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
                if doc == "README.md":
                    self.assertGreater(len(links), 5, "the README links the docs")
                for link in links:
                    if re.match(r"[a-z]+://", link):
                        continue
                    self.assertTrue(os.path.exists(os.path.join(base, link)),
                                    "%s links to %s: missing" % (doc, link))
                for ref in REPO_PATH.findall(text):
                    ref = ref.rstrip(".")
                    self.assertTrue(os.path.exists(source_path(ref)),
                                    "%s names %s: not in the repository" % (doc, ref))


if __name__ == "__main__":
    unittest.main(verbosity=2)
