"""pair.py: a cluster and two confman-fs mounts (A writes, B reads and
watches) around a list of test functions, for the mount tests that change
the cluster under them (test_split_mount.py, test_runbook.py).

run() brings the cluster up on CONFMAN_IT_PORT (or the test's default),
mounts A and B with long kernel cache timeouts (freshness must come from the
watch stream), hands them to the test module, runs the tests, and takes
everything down in finally blocks (test_fs and harness also clean up at
exit), then exits 0 only if every test passed.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_fs  # noqa: E402
from test_fs import Mount, harness  # noqa: E402

# Long kernel cache timeouts: what B shows fresh, the watch made fresh.
OPTS = "timeout=5000,attr_timeout=30,entry_timeout=30"


class Pair:
    def __init__(self, cluster, a, b):
        self.cluster, self.a, self.b = cluster, a, b


def run(default_port, tests, bind, opts=OPTS, **cluster_kw):
    """bind(pair) gives the test module its cluster and mounts."""
    port = int(os.environ.get("CONFMAN_IT_PORT", str(default_port)))
    c = harness.Cluster(base_port=port, **cluster_kw).up()
    test_fs.CLUSTER = c
    mounts = []
    try:
        c.leader()
        mounts.append(Mount(c, opts))
        mounts.append(Mount(c, opts))
        bind(Pair(c, mounts[0], mounts[1]))
        test_fs.harness_run(tests)
    finally:
        try:
            test_fs.unmount_all(mounts)
        finally:
            c.down()
    print("%d passed, %d failed" % tuple(test_fs.RESULT))
    sys.exit(0 if test_fs.RESULT[1] == 0 else 1)
