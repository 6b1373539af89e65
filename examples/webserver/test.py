# The webserver example's test (test.rhai) as a NixOS-style Python script:
# the client runs its whole scenario against the server, by host name.
start_all()
server.wait_for_unit("webserver")

with subtest("client scenario"):
    out = client.succeed("client server 80")
    print(out)

with subtest("pages by hand"):
    page = client.succeed("client server 80 get /fib?n=30")
    assert "fib(30) = 832040" in page, f"unexpected page: {page}"
    client.fail("client server 80 get /missing")
