# nixos/tests/knot.nix of NixOS/nixpkgs at commit
# 3f23af73a483903d628670205e6734787f7cd917 (MIT licence, (c) the Nixpkgs/NixOS
# contributors). original.py: its testScript verbatim (the Nix string with its
# indentation removed); test.py: the covnet port, run by spec.toml;
# test.py.diff: `diff -u original.py test.py`; CHANGES.md: every change.
import re

start_all()

client.wait_for_unit("network.target")
primary.wait_for_unit("knot.service")
secondary.wait_for_unit("knot.service")


def test(host, query_type, query, pattern):
    out = client.succeed(f"khost -t {query_type} {query} {host}").strip()
    client.log(f"{host} replied with: {out}")
    assert re.search(pattern, out), f'Did not match "{pattern}"'


for host in ("192.168.0.1", "fd00::1", "192.168.0.2", "fd00::2"):
    with subtest(f"Interrogate {host}"):
        test(host, "SOA", "example.com", r"start of authority.*noc\.example\.com\.")
        test(host, "A", "example.com", r"has no [^ ]+ record")
        test(host, "AAAA", "example.com", r"has no [^ ]+ record")

        test(host, "A", "www.example.com", r"address 192.0.2.1$")
        test(host, "AAAA", "www.example.com", r"address 2001:db8::1$")

        test(host, "NS", "sub.example.com", r"nameserver is ns\d\.example\.com.$")
        test(host, "A", "sub.example.com", r"address 192.0.2.2$")
        test(host, "AAAA", "sub.example.com", r"address 2001:db8::2$")

        test(host, "RRSIG", "www.example.com", r"RR set signature is")
        test(host, "DNSKEY", "example.com", r"DNSSEC key is")

# (systemd-analyze security: covnet guests run no systemd)
