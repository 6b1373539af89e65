# nixos/tests/nginx-status-page.nix of NixOS/nixpkgs at commit
# a27d63669d9dcb574a6cf994dc3f4d02c7a2061b (MIT licence, (c) the Nixpkgs/NixOS
# contributors). original.py: its testScript verbatim (the Nix string with its
# indentation removed); test.py: the covnet port, run by spec.toml;
# test.py.diff: `diff -u original.py test.py`; CHANGES.md: every change.
start_all()

webserver.wait_for_unit("nginx")
webserver.wait_for_open_port(80)

def expect_http_code(node, code, url):
    http_code = node.succeed(f"curl -w '%{{http_code}}' '{url}'")
    assert http_code.split("\n")[-1].strip() == code, \
      f"expected {code} but got following response:\n{http_code}"

with subtest("localhost can access status page"):
    expect_http_code(webserver, "200", "http://localhost/nginx_status")

with subtest("localhost can access other page"):
    expect_http_code(webserver, "200", "http://localhost/index.html")

with subtest("client can not access status page"):
    expect_http_code(client, "403", "http://10.0.0.1/nginx_status")

with subtest("client can access other page"):
    expect_http_code(client, "200", "http://10.0.0.1/index.html")
