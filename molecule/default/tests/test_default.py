"""Verify, host by host over SSH, that each lab host is the machine the inventory names.

One command per host: testinfra's Ansible backend pays a whole Ansible run per call.
"""


def test_host_is_itself_with_its_own_sshd_and_opt_zimbra(host):
    address = host.ansible.get_variables()["ansible_host"]
    out = host.run("hostname; findmnt -n -o TARGET /opt/zimbra; ss -ltnH").stdout.splitlines()
    assert out[0] == host.backend.get_hostname().split(".")[0]
    # Each host has its own /opt/zimbra (a bind mount of its private directory).
    assert out[1] == "/opt/zimbra"
    assert any(f"{address}:22" in line for line in out[2:]), "sshd listens on the host's own address"
