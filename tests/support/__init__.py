"""What several test tiers (and bench/) share, in modules made for it.

- servers: throwaway PostgreSQL and MariaDB servers; ddl: each tool's history tables
- scratch: an empty database per test on each engine; gate: lookups, reads and the
  gate's verdict over them
- pki: test CAs and certificates; net: free ports; manifests: kustomize output
- fakes: a clock and a version source for the lookup layer's unit tests
- wording: the denials and warnings tests quote
- summary: the figures printed at the end of a run

Test modules and conftests are never imported as modules (tests/unit/test_test_imports.py).
"""
