# nixos/tests/openssh.nix of NixOS/nixpkgs at commit
# 50d6aae3fe0d07170bf93a2bf08b130c8348051b (MIT licence, (c) the Nixpkgs/NixOS
# contributors). original.py: its testScript verbatim (the Nix string with its
# indentation removed); test.py: the covnet port, run by spec.toml;
# test.py.diff: `diff -u original.py test.py`; CHANGES.md: every change.
start_all()

server.wait_for_unit("sshd", timeout=30)
server_allowed_users.wait_for_unit("sshd", timeout=30)
server_localhost_only.wait_for_unit("sshd", timeout=30)
server_match_rule.wait_for_unit("sshd", timeout=30)
server_no_openssl.wait_for_unit("sshd", timeout=30)
server_no_pam.wait_for_unit("sshd", timeout=30)

server_lazy.wait_for_unit("sshd.socket", timeout=30)
server_localhost_only_lazy.wait_for_unit("sshd.socket", timeout=30)
server_lazy_socket.wait_for_unit("sshd.socket", timeout=30)

with subtest("manual-authkey"):
    client.succeed("mkdir -m 700 /root/.ssh")
    client.succeed(
        '/usr/bin/ssh-keygen -t ed25519 -f /root/.ssh/id_ed25519 -N ""'
    )
    public_key = client.succeed(
        "/usr/bin/ssh-keygen -y -f /root/.ssh/id_ed25519"
    )
    public_key = public_key.strip()
    client.succeed("chmod 600 /root/.ssh/id_ed25519")

    server.succeed("mkdir -m 700 /root/.ssh")
    server.succeed("echo '{}' > /root/.ssh/authorized_keys".format(public_key))
    server_lazy.succeed("mkdir -m 700 /root/.ssh")
    server_lazy.succeed("echo '{}' > /root/.ssh/authorized_keys".format(public_key))

    client.wait_for_unit("network.target")
    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no server 'echo hello world' >&2",
        timeout=30
    )
    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no server 'ulimit -l' | grep 1024",
        timeout=30
    )

    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no server-lazy 'echo hello world' >&2",
        timeout=30
    )
    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no server-lazy 'ulimit -l' | grep 1024",
        timeout=30
    )

with subtest("socket activation on a non-standard port"):
    client.succeed(
        "cat /etc/snakeoil/privkey > privkey.snakeoil"
    )
    client.succeed("chmod 600 privkey.snakeoil")
    # The final segment in this IP is allocated according to the alphabetical order of machines in this test.
    client.succeed(
        "ssh -p 2222 -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -i privkey.snakeoil root@192.168.2.5 true",
        timeout=30
    )

with subtest("configured-authkey"):
    client.succeed(
        "cat /etc/snakeoil/privkey > privkey.snakeoil"
    )
    client.succeed("chmod 600 privkey.snakeoil")
    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -i privkey.snakeoil server true",
        timeout=30
    )
    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -i privkey.snakeoil server-lazy true",
        timeout=30
    )

with subtest("localhost-only"):
    server_localhost_only.succeed("ss -nlt | grep '127.0.0.1:22'")
    server_localhost_only_lazy.succeed("ss -nlt | grep '127.0.0.1:22'")

with subtest("match-rules"):
    server_match_rule.succeed("ss -nlt | grep '127.0.0.1:22'")

with subtest("allowed-users"):
    client.succeed(
        "cat /etc/snakeoil/privkey > privkey.snakeoil"
    )
    client.succeed("chmod 600 privkey.snakeoil")
    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -i privkey.snakeoil alice@server-allowed-users true",
        timeout=30
    )
    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -i privkey.snakeoil bob@server-allowed-users true",
        timeout=30
    )
    client.fail(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -i privkey.snakeoil carol@server-allowed-users true",
        timeout=30
    )

with subtest("no-openssl"):
    client.succeed(
        "cat /etc/snakeoil/privkey-ed25519 > privkey.snakeoil"
    )
    client.succeed("chmod 600 privkey.snakeoil")
    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -i privkey.snakeoil server-no-openssl true",
        timeout=30
    )

with subtest("no-pam"):
    client.succeed(
        "cat /etc/snakeoil/privkey > privkey.snakeoil"
    )
    client.succeed("chmod 600 privkey.snakeoil")
    client.succeed(
        "ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -i privkey.snakeoil server-no-pam true",
        timeout=30
    )
