"""The README's NGINX config for several nodes, run for real in front of two imgproxy servers.

The three blocks (``http block``, ``server block`` and ``several nodes``) are read out of
README.rst; the nodes' upstream replaces the single server's, and only addresses and the
cache directory change. The test's own addition is an ``X-Upstream`` header naming the node
that answered. Both servers fetch from one loopback origin and keep its originals
(``source_cache_bytes``): every size, preset and rectangle of one photo must be answered by
one node, the photos must spread over both, and the origin must see each photo once.
NGINX is required: a missing binary fails the test.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from urllib.parse import quote

import pytest
from support import (
    Origin,
    decode,
    encode,
    free_port,
    nginx_binary,
    quadrants,
    readme_block,
    replace_once,
    start_nginx,
)

PHOTOS = [f"photos/p{n:02d}.jpg" for n in range(16)]  # enough that both nodes get some
QUERY_PHOTOS = [f"photos/q{n:02d}.jpg" for n in range(8)]  # asked for by /?url= only
JPEG = encode(quadrants((320, 240)), "JPEG", quality=90)

# (path prefix, size of the reply) for a 320x240 source
FORMS = [
    ("/100x100", (100, 75)),
    ("/100x100!", (100, 100)),
    ("/0x60", (80, 60)),
    ("/s50", (50, 50)),  # a preset
    ("/80x80/0x0/160x120", (80, 60)),  # the top-left quadrant, then fitted
    ("/40x40!/160x0/320x240", (40, 40)),  # the right half, then cropped
]


def nodes_http(tmp, port: int, node_ports: list[int]) -> str:
    http_block = replace_once(readme_block("# imgproxy: http block"),
                              "/var/cache/nginx/images", str(tmp / "cache"))
    server_block = readme_block("# imgproxy: server block")
    single = re.search(r"^upstream imgproxy \{\n.*?^\}\n", server_block, re.M | re.S)
    assert single, "the README's server block should start with its upstream"
    server_block = replace_once(server_block, single.group(0), "")
    server_block = replace_once(server_block, "listen 80;", f"listen 127.0.0.1:{port};")
    cache_status = "add_header X-Cache-Status $upstream_cache_status always;"
    server_block = replace_once(server_block, cache_status,
                                f"{cache_status}\n    add_header X-Upstream $upstream_addr always;")
    nodes = readme_block("# imgproxy: several nodes")
    servers = re.findall(r"^ *server \S+;\n", nodes, re.M)
    assert len(servers) >= 2, "the README's upstream should list several nodes"
    nodes = replace_once(nodes, "".join(servers),
                         "".join(f"    server 127.0.0.1:{p};\n" for p in node_ports))
    return f"{http_block}\n{nodes}\n{server_block}"


@pytest.fixture(scope="module")
def origin():
    o = Origin().start()
    for path in PHOTOS + QUERY_PHOTOS:
        o.serve(f"/base/{path}", JPEG)
    yield o
    o.stop()


@pytest.fixture(scope="module")
def front(launch_proxy, origin, tmp_path_factory):
    nginx_binary()  # no NGINX is a failure, not a skip
    flags = (f"--origins=http://127.0.0.1:{origin.port}/base/", "--source_cache_bytes=50000000",
             "--presets=s50:w=50&h=50&mode=crop", "--cache_control=public, max-age=3600")
    nodes = [launch_proxy(*flags), launch_proxy(*flags)]  # started side by side
    for node in nodes:
        node.wait_ready()
    tmp = tmp_path_factory.mktemp("nginx-nodes")
    port = free_port()
    nginx = start_nginx(tmp, nodes_http(tmp, port, [n.port for n in nodes]), port, nodes)
    yield nginx
    nginx.stop()  # the nodes are stopped by launch_proxy's fixture, by PID


def node_of(r, front) -> int:
    """The index of the node that answered, from X-Upstream."""
    assert r.status == 200, (r.status, r.body[:200], front.error_log())
    assert r.headers["X-Cache-Status"] == "MISS"
    addresses = [f"127.0.0.1:{p.port}" for p in front.proxies]
    assert r.headers["X-Upstream"] in addresses, r.headers["X-Upstream"]
    return addresses.index(r.headers["X-Upstream"])


def test_every_size_of_one_photo_goes_to_one_node_and_is_fetched_once(front, origin):
    answered: dict[str, set[int]] = defaultdict(set)
    for path in PHOTOS:
        for prefix, size in FORMS:
            r = front.get(path=f"{prefix}/{path}")
            answered[path].add(node_of(r, front))
            assert decode(r.body).size == size, (prefix, path)
    split = {path: nodes for path, nodes in answered.items() if len(nodes) != 1}
    assert not split, f"photos answered by more than one node: {split}"
    per_node = Counter(next(iter(nodes)) for nodes in answered.values())
    assert set(per_node) == {0, 1}, f"all {len(PHOTOS)} photos went to one node: {per_node}"
    assert {path: origin.hits.get(f"/base/{path}") for path in PHOTOS} == {path: 1 for path in PHOTOS}
    # asked again: NGINX's own cache answers, imgproxy and the origin see nothing
    again = front.get(path=f"{FORMS[0][0]}/{PHOTOS[0]}")
    assert (again.status, again.headers["X-Cache-Status"]) == (200, "HIT")
    assert origin.hits[f"/base/{PHOTOS[0]}"] == 1


def test_the_query_api_hashes_its_url(front, origin):
    answered: dict[str, set[int]] = defaultdict(set)
    for path in QUERY_PHOTOS:
        for width in (30, 40, 50, 60):
            r = front.get(f"url={quote('/' + path, safe='')}&w={width}")
            answered[path].add(node_of(r, front))
            assert decode(r.body).width == width
        info = front.get(f"url={quote('/' + path, safe='')}", path="/info")
        answered[path].add(node_of_info(info, front))
    assert all(len(nodes) == 1 for nodes in answered.values()), dict(answered)
    assert {path: origin.hits.get(f"/base/{path}") for path in QUERY_PHOTOS} == {p: 1 for p in QUERY_PHOTOS}


def node_of_info(r, front) -> int:
    """/info is not cached by NGINX: no X-Cache-Status, but X-Upstream all the same."""
    assert r.status == 200, (r.status, r.body[:200])
    assert (r.json["width"], r.json["height"]) == (320, 240)
    addresses = [f"127.0.0.1:{p.port}" for p in front.proxies]
    return addresses.index(r.headers["X-Upstream"])
